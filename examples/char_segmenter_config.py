"""The character segmenter (`char_segmenter.py`), a task from outside the package.

python train.py --config examples/char_segmenter_config.py --workdir runs/seg
python train.py --config examples/char_segmenter_config.py:tiny --workdir /tmp/seg
python train.py --config examples/char_segmenter_config.py:ensemble --workdir runs/seg4
"""

import os

import ml_collections

from bilstm_jax.configs import default

HERE = os.path.dirname(os.path.abspath(__file__))


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  """The default config with the segmenter's task, data sizes and model; `variant` is ''
  or any of `tiny`, `ensemble` and `tiny_ensemble` (`default.apply_variant`)."""
  config = default.get_config()
  # The class by its file's path, so this config works from any directory.
  config.data.task = os.path.join(HERE, 'char_segmenter.py') + ':CharSegmenter'
  config.data.num_train = 2048  # generated sentences ('' train file)
  config.data.num_dev = 256
  config.data.seq_len = 6  # the most words in a sentence
  config.data.test = 'test'  # --mode=evaluate/predict: the generated test split
  config.model.hidden_size = 32
  config.model.embed_size = 16  # per character
  config.train.epochs = 10
  config.train.batch_size = 32
  config.train.log_every_epochs = 2
  config.train.metric = 'dev_accuracy'
  config.train.metric_mode = 'max'
  return default.apply_variant(config, variant, _tiny)


def _tiny(config: ml_collections.ConfigDict) -> None:
  """Seconds on a CPU: 64 sentences of up to 3 words, 3 epochs of 4 steps, hidden size 8."""
  config.data.num_train = 64
  config.data.num_dev = 16
  config.data.seq_len = 3
  config.model.hidden_size = 8
  config.model.embed_size = 8
  config.optim.learning_rate = 0.1  # 12 steps: enough to learn most word starts
  config.train.epochs = 3
  config.train.batch_size = 16
  config.train.log_every_epochs = 1
  config.train.steps_per_call = 2
  config.checkpoint.save_every_steps = 2
