"""Digit strings from joined FSDD utterances: BiLSTM + CTC (task 'fsdd_ctc'), or a label
per frame, digit or silence (task 'fsdd_frames', variant 'frames').

Utterances of 2-7 digits join recordings of one speaker with 50-300 ms of quiet noise
between them and +-6 dB gains (`bilstm_jax.data.fsdd.make_joined`): `data.num_train` from
the training recordings (index 10-49), a fixed set of `data.num_dev` from the dev
recordings (index 5-9, seed `fsdd.DEV_SEED`). CTC scores the greedy digit error rate on
device (`dev_der`) and, at every evaluation, the digit error rate of prefix beam search
on the host (`dev_beam_der`, about a second for the 500 dev utterances), which ranks the
checkpoints: the kept best is the best decoded the way transcripts are.
Augmentation (`configs/fsdd.py`'s keys, off here) is redrawn every epoch.

  python train.py --config=fsdd_ctc --workdir runs/fsdd_ctc
  python train.py --config=configs/fsdd_ctc.py:frames --workdir runs/fsdd_frames
  python train.py --config=configs/fsdd_ctc.py:frames --workdir runs/fsdd_frames_fwd \
      --config.model.bidirectional=False

`get_config('tiny')` / `'frames_tiny'`: seconds-long variants for tests.
"""

import ml_collections

from bilstm_jax.configs import fsdd


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = fsdd.get_config()
  frames = variant in ('frames', 'frames_tiny')
  config.data.task = 'fsdd_frames' if frames else 'fsdd_ctc'
  config.data.num_train = 2000  # joined training utterances (~9,000 digits)
  config.data.num_dev = 500  # the fixed dev utterances
  config.data.min_digits = 2
  config.data.max_digits = 7
  config.data.buckets = 4
  # 30 ms per model step: a digit still spans ~13 steps, and the recurrence runs 3x fewer.
  config.data.frame_stack = 3

  config.model.hidden_size = 128
  config.model.num_layers = 2
  config.model.dropout = 0.2
  config.optim.learning_rate = 3e-3
  config.optim.warmup_steps = 100
  config.train.epochs = 12
  config.train.batch_size = 32
  config.data.beam_width = 8  # CTC: prefixes the beam search of dev_beam_der keeps
  config.train.metric = 'dev_accuracy' if frames else 'dev_beam_der'
  config.train.metric_mode = 'max' if frames else 'min'

  if frames:  # smaller than the CTC model: two of these runs compare the directions
    config.data.num_train = 1000
    config.model.hidden_size = 64
    config.train.epochs = 8

  if variant.endswith('tiny'):
    config.data.num_train = 48
    config.data.num_dev = 8
    config.data.max_digits = 3
    config.data.delta_order = 0
    config.data.frame_stack = 2 if variant == 'tiny' else 1
    config.data.buckets = 2
    config.model.hidden_size = 8
    config.model.num_layers = 1
    config.model.dropout = 0.0
    config.optim.learning_rate = 0.02
    config.optim.warmup_steps = 0
    config.train.epochs = 10
    config.train.batch_size = 8
    config.train.log_every_epochs = 5
  elif variant not in ('', 'frames'):
    raise ValueError(
      f"Unknown fsdd_ctc variant {variant!r}; known: 'tiny', 'frames', 'frames_tiny'."
    )
  return config
