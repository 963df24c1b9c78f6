"""Trains a bilstm_jax model from an ml_collections config file.

python train.py --config configs/default.py --workdir /tmp/run [--config.x.y=value ...]
"""

from absl import app, flags
from ml_collections import config_flags

from bilstm_jax import train_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for config.json, metrics and summaries.')
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  train_lib.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == '__main__':
  app.run(main)
