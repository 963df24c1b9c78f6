"""Spoken-digit classification on the Free Spoken Digit Dataset (task 'fsdd').

MFCC features (13 + deltas + delta-deltas, 25 ms windows every 10 ms) normalised with the
training split's statistics, a 2-layer BiLSTM, mean pooling over valid frames, 10 digits.
Dev: recordings 5-9 of every speaker and digit (`bilstm_jax.data.fsdd.dev_split`).
Variant 'aug' augments every training example afresh each epoch (time shift, noise,
SpecAugment masks, drawn from (config.seed, epoch, example)): dev accuracy 100% (300/300).

  python train.py --config=fsdd --workdir runs/fsdd
  python train.py --config=configs/fsdd.py:aug --workdir runs/fsdd_aug   # augmented
  python train.py --config=configs/fsdd.py:aug --workdir runs/fsdd_theo \
      --config.data.test_speaker=theo          # speaker-disjoint: theo unseen
  python train.py --workdir runs/fsdd --mode=evaluate --config.data.test=DIR
  python train.py --workdir runs/fsdd --mode=predict --input=DIR --output=digits.jsonl

`get_config('tiny')`: a seconds-long variant for tests (set data.folder to generated wavs).
"""

import os

import ml_collections

from bilstm_jax.configs import default

# The developers' copy of FSDD sits beside the repository (../shared/data/fsdd).
FSDD = os.path.normpath(
  os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data', 'fsdd')
)


def speech_data(config: ml_collections.ConfigDict) -> None:
  """The data keys every speech config has (see bilstm_jax/tasks/speech.py)."""
  d = config.data
  d.folder = os.path.join(FSDD, 'recordings')  # FSDD-named wavs: train and dev come from here
  d.test_speaker = ''  # a speaker's name: all of theirs is dev (speaker-disjoint split)
  # --mode=evaluate/predict: 'dev', a folder of wavs, one .wav, or a .txt list of wav paths.
  d.test = 'dev'
  d.features = 'mfcc'  # or 'logmel'
  d.num_mels = 40
  d.num_ceps = 13  # mfcc only, c0 included
  d.delta_order = 2  # 0 static, 1 + deltas, 2 + delta-deltas
  d.window_ms = 25.0
  d.hop_ms = 10.0
  d.normalise = 'train'  # 'train' statistics (saved in task.json), 'utterance' or 'none'
  d.frame_stack = 1  # k > 1: k consecutive frames per model step (k times fewer steps)
  d.cache_dir = ''  # '' = no feature cache on disk (FSDD's features take under a second)
  # Augmentation, off by default: drawn afresh every epoch for every training example
  # from (config.seed, epoch, example), so a resumed run redraws exactly; dev never is.
  d.shift_ms = 0.0  # time shift uniform in +-shift_ms
  d.snr_db_min = 0.0  # white noise at an SNR uniform in [min, max] dB; max 0 = none
  d.snr_db_max = 0.0
  d.time_masks = 0  # SpecAugment: masks of up to max_time_mask frames
  d.max_time_mask = 0
  d.freq_masks = 0  # and of up to max_freq_mask feature dimensions
  d.max_freq_mask = 0
  d.buckets = 4  # lengths vary ~15x: pad each batch to one of 4 length buckets


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.task = 'fsdd'
  speech_data(config)

  config.model.hidden_size = 128
  config.model.num_layers = 2
  config.model.dropout = 0.3
  config.model.pooling = 'mean'

  config.optim.name = 'adamw'
  config.optim.learning_rate = 3e-3
  config.optim.weight_decay = 1e-4
  config.optim.schedule = 'warmup_cosine'
  config.optim.warmup_steps = 100
  config.optim.grad_clip_norm = 1.0

  config.train.epochs = 30
  config.train.batch_size = 32
  config.train.log_every_epochs = 1
  config.train.metric = 'dev_accuracy'
  config.train.metric_mode = 'max'
  config.checkpoint.keep_best = 1

  if variant == 'aug':  # the dev >= 99% recipe: fresh augmentation, 2 frames per step
    d = config.data
    d.shift_ms = 30.0
    d.snr_db_min, d.snr_db_max = 15.0, 30.0
    d.time_masks, d.max_time_mask = 2, 4
    d.freq_masks, d.max_freq_mask = 2, 4
    d.frame_stack = 2
    # Every epoch is one augmented pass (the old recipe's 20 epochs held a clean and an
    # augmented copy each): 40 keeps its number of steps.
    config.train.epochs = 40
  elif variant == 'tiny':
    config.model.hidden_size = 8
    config.model.num_layers = 1
    config.model.dropout = 0.0
    config.data.delta_order = 0
    config.data.buckets = 2
    config.optim.learning_rate = 0.02
    config.optim.warmup_steps = 0
    config.train.epochs = 12
    config.train.batch_size = 8
    config.train.log_every_epochs = 4
  elif variant:
    raise ValueError(f"Unknown fsdd config variant {variant!r}; known: 'aug', 'tiny'.")
  return config
