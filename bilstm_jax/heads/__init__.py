"""Heads that turn the BiLSTM's per-step features into task outputs.

dense.py     linear heads initialised like `torch.nn.Linear`
pooling.py   mean / max / attention pooling over valid steps only
crf.py       a linear-chain CRF: log-likelihood, Viterbi decoding, BIO/BIOES constraints
ctc.py       CTC loss, greedy and prefix beam search decoding, forced alignment
forecast.py  instance normalisation of forecast windows (RevIN), for `bilstm_jax.models.forecast`
"""
