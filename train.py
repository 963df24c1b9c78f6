"""Trains, evaluates or predicts with a bilstm_jax model from an ml_collections config file.

A config with an `ensemble` block trains a population, one with a `sweep` block one
population per shape (`bilstm_jax.ensembles.sweep`).

python train.py --config configs/default.py --workdir /tmp/run [--config.x.y=value ...]
python train.py --config configs/default.py --workdir /tmp/run --mode=evaluate
python train.py --config configs/default.py --workdir /tmp/run --mode=predict \
    --input=seqs.jsonl --output=preds.jsonl

Training resumes from the newest checkpoint in --workdir when started again.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

from bilstm_jax import errors, runtime
from bilstm_jax.ensembles import sweep
from bilstm_jax.training import inference
from bilstm_jax.training import loop as train_lib

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, plots and export.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'predict'], 'What to do.')
flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'evaluate/predict: which one.')
flags.DEFINE_string('input', None, 'predict: a data file or split; default config.data.test.')
flags.DEFINE_string('output', None, 'predict: where to write predictions (.jsonl or .npz).')
flags.DEFINE_bool(
  'tune_cpu',
  True,
  "Raise glibc's mmap/trim thresholds and dispatch synchronously (bilstm_jax.runtime): "
  'XLA on CPU then stops faulting its buffers in every step. Process-wide.',
)
flags.DEFINE_string(
  'compilation_cache',
  '~/.cache/bilstm_jax/xla',
  'Directory for JAX\'s persistent compilation cache (a rerun skips compiling); "" = off.',
)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS['verbosity'].present:
    # orbax and jax log every step of every save at INFO; --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING)
  runtime.freeze_gc()  # after the imports: the collector stops rescanning their objects
  if FLAGS.tune_cpu:
    runtime.tune_cpu()
  if FLAGS.compilation_cache:
    runtime.enable_compilation_cache(FLAGS.compilation_cache)
  config, workdir = FLAGS.config, FLAGS.workdir
  try:
    if config.get('sweep') is not None:  # one population per shape (bilstm_jax.ensembles.sweep)
      if FLAGS.mode != 'train':
        raise app.UsageError(
          f"--mode={FLAGS.mode} takes one run: a shape's workdir ({workdir}/<shape>) with "
          'the ensemble config of that shape; a sweep config only trains.'
        )
      sweep.run(config, workdir)
    elif FLAGS.mode == 'train':
      train_lib.train_and_evaluate(config, workdir)
    elif FLAGS.mode == 'evaluate':
      inference.evaluate(config, workdir, FLAGS.checkpoint)
    else:
      source = FLAGS.input or config.data.test
      inference.predict(config, workdir, source, FLAGS.output, FLAGS.checkpoint)
  except errors.RunError as e:
    # The message says what and where; a traceback would only hide it.
    print(f'Error: {e}', file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
