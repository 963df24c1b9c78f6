"""Heads that turn the BiLSTM's per-step features into task outputs.

dense.py    linear heads initialised like `torch.nn.Linear`
pooling.py  mean / max / attention pooling over valid steps only
"""
