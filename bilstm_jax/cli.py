"""The command line: train, evaluate or predict from an ml_collections config.

  python train.py --config configs/default.py --workdir runs/x [--config.a.b=value ...]
  python train.py --workdir runs/x --mode=evaluate [--config.data.test=FILE]
  python train.py --workdir runs/x --mode=predict --input=FILE --output=preds.jsonl
  python train.py --config default --workdir runs/x --print_config

`--config` takes a path or the name of a shipped config (`default`, `ensemble`, ...);
evaluate and predict default to the workdir's own config.json, and `--config.*`
overrides apply on top of either. Every config, usage or data error is one `Error:` line
and exit status 1 (`--traceback` shows the traceback). Heavy imports wait until a run
starts, so `--help` answers at once.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  'config', None, 'Config file or shipped config name.', lock_config=True
)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics, plots and export.')
flags.DEFINE_enum('mode', 'train', ['train', 'evaluate', 'predict'], 'What to do.')
flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'evaluate/predict: which one.')
flags.DEFINE_string('input', None, 'predict: a data file or split; default config.data.test.')
flags.DEFINE_string(
  'output', None, 'predict: .jsonl (readable records), .conll/.tsv (taggers), .npz (arrays).'
)
flags.DEFINE_bool('print_config', False, 'Print the resolved config as JSON and exit.')
flags.DEFINE_bool('traceback', False, 'Show the traceback of an error instead of one line.')
flags.DEFINE_bool(
  'tune_cpu',
  True,
  "Raise glibc's mmap/trim thresholds and dispatch synchronously (bilstm_jax.runtime): "
  'XLA on CPU then stops faulting its buffers in every step. Process-wide.',
)
flags.DEFINE_string(
  'compilation_cache',
  'default',
  "Directory for JAX's persistent compilation cache (a rerun skips compiling); "
  '"default": xla/ in the kernel cache ($BILSTM_JAX_CACHE, else $XDG_CACHE_HOME/bilstm_jax, '
  'else ~/.cache/bilstm_jax); "" = off.',
)

_SAVED = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'training', 'saved_config.py')


def configs_dir() -> str | None:
  """The shipped configs: `bilstm_jax/configs` in an installed wheel, else the
  repository's top-level `configs/` beside the package."""
  here = os.path.dirname(os.path.abspath(__file__))
  for path in (os.path.join(here, 'configs'), os.path.join(os.path.dirname(here), 'configs')):
    if os.path.isdir(path):
      return path
  return None


def resolve_argv(argv: list[str]) -> list[str]:
  """Rewrites `--config=NAME` to a shipped config's path, and adds the workdir's saved
  config for evaluate/predict without `--config`."""
  out, has_config, mode, workdir = [], False, 'train', None
  i = 0
  while i < len(argv):
    arg = argv[i]
    if arg in ('--config', '--mode', '--workdir') and i + 1 < len(argv):
      arg = f'{arg}={argv[i + 1]}'
      i += 1
    name, _, value = arg.partition('=')
    if name == '--config':
      has_config = True
      path, sep, rest = value.partition(':')
      shipped = configs_dir()
      if not os.path.exists(path) and shipped and re.fullmatch(r'[A-Za-z0-9_]+', path):
        candidate = os.path.join(shipped, f'{path}.py')
        if os.path.exists(candidate):
          arg = f'--config={candidate}{sep}{rest}'
    elif name == '--mode':
      mode = value
    elif name == '--workdir':
      workdir = value
    out.append(arg)
    i += 1
  if not has_config and mode != 'train' and workdir and '--help' not in out:
    out.insert(1, f'--config={_SAVED}:{os.path.abspath(workdir)}')
  return out


def _one_line(e: BaseException) -> str:
  """An exception's message as one readable line."""
  text = str(e)
  if isinstance(e, AttributeError | KeyError):  # ml_collections: a key that does not exist
    text = text.encode().decode('unicode_escape')
    key = re.search(r"'(\w+)'", text)
    hint = re.search(r'Did you mean "(\w+)"', text)
    if key:
      text = f'no config key {key.group(1)!r}'
      text += f' (did you mean {hint.group(1)!r}?)' if hint else ''
  text = text.replace('Configuration is not available because of an earlier failure to load: ', '')
  if 'Failed loading config file' in text:  # ml_collections: the file's own error
    found = re.findall(r'\[Errno \d+\] (.*)', text)
    text = found[-1] if found else text.splitlines()[-1]
  elif 'Error whilst parsing config file' in text:  # ml_collections: get_config raised
    last = text.strip().splitlines()[-1]  # the exception's own line, after its traceback
    text = '--config: ' + re.sub(r'^[\w.]+: ', '', last)
  return re.sub(r'\s+', ' ', text).strip()


def _fail(message: str) -> None:
  print(f'Error: {message}', file=sys.stderr)
  sys.exit(1)


def _parse(argv: list[str]) -> list[str]:
  try:
    return FLAGS(argv)
  except flags.Error as e:
    _fail(_one_line(e))
  except (AttributeError, KeyError, TypeError, ValueError) as e:  # a --config.* override
    _fail(f'a --config override: {_one_line(e)}')
  except Exception as e:  # the config file's own code raised: say where
    import traceback

    frame = traceback.extract_tb(e.__traceback__)[-1]
    _fail(f'--config: {type(e).__name__}: {e} ({frame.filename}:{frame.lineno})')


def _load_config():
  """The parsed config, or an `Error:` line naming what is wrong with it."""
  try:
    config = FLAGS.config
    if config is not None:
      config.to_dict()  # a config file that failed to load raises only when first used
    return config
  except (OSError, AttributeError, KeyError, TypeError, ValueError, SyntaxError) as e:
    _fail(f'--config: {_one_line(e)}')


def main(argv=None) -> None:
  """The `bilstm-jax` console command and `train.py`."""
  argv = resolve_argv(list(sys.argv if argv is None else argv))
  try:
    app.run(_main, argv=argv, flags_parser=_parse)
  except SystemExit as e:
    if e.code == 1 and {'--help', '-h', '--helpfull', '--helpshort'} & set(argv):
      sys.exit(0)  # absl exits 1 after printing the help; asking for help is no error
    raise


def _main(argv) -> None:
  if len(argv) > 1:
    _fail(f'unexpected arguments {argv[1:]} (flags are --name=value).')
  if not FLAGS.workdir and not FLAGS.print_config:
    _fail('--workdir is required (the run directory).')
  config = _load_config()
  if config is None:
    _fail(
      '--config is required: a config file or a shipped name such as default (evaluate '
      "and predict default to the workdir's config.json)."
    )
  if FLAGS.print_config:
    import json

    print(json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str))
    return
  if not FLAGS['verbosity'].present:
    # orbax and jax log every step of every save at INFO; --verbosity=0 brings them back.
    logging.set_verbosity(logging.WARNING if FLAGS.mode == 'train' else logging.ERROR)
  quiet = FLAGS.mode != 'train' and not FLAGS.traceback
  with warnings.catch_warnings() if quiet else contextlib.nullcontext():
    if quiet:
      warnings.simplefilter('ignore')
    _run(config)


def _run(config) -> None:
  from bilstm_jax import app as run_app
  from bilstm_jax import errors, runtime

  runtime.freeze_gc()  # after the imports: the collector stops rescanning their objects
  if FLAGS.tune_cpu:
    runtime.tune_cpu()
  if FLAGS.compilation_cache:
    runtime.enable_compilation_cache(FLAGS.compilation_cache)
  workdir = FLAGS.workdir
  try:
    if FLAGS.mode == 'train':
      run_app.train_and_evaluate(config, workdir)
    elif config.get('sweep') is not None:
      raise errors.ConfigError(
        f"--mode={FLAGS.mode} takes one run: a shape's workdir ({workdir}/<shape>) with "
        'the ensemble config of that shape; a sweep config only trains.'
      )
    elif FLAGS.mode == 'evaluate':
      run_app.evaluate(config, workdir, FLAGS.checkpoint)
    else:
      run_app.predict(
        config, workdir, FLAGS.input or config.data.test, FLAGS.output, FLAGS.checkpoint
      )
  except errors.RunError as e:
    if FLAGS.traceback:
      raise
    # The message says what and where; a traceback would only hide it.
    _fail(_one_line(e))
