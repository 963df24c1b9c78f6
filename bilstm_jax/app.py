"""The training app: a config in, a trained run out (what `train.py` calls).

This is the one place that reads a whole ConfigDict: it validates the config, builds the
task (`bilstm_jax.tasks`) and reads its data, builds the `Program` (one model, or a
population for a config with an `ensemble` block), and runs it through the loop in a
locked workdir. A config with a `sweep` block trains one population per shape.

Nothing is created on disk until the config, the data and the program are known to be
good, so a run that cannot start leaves no workdir behind.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shlex
import subprocess
import sys
import time

import bilstm_jax.ensembles.trained  # noqa: F401 (registers how inference.load loads ensembles)
from bilstm_jax import errors, plots, tasks
from bilstm_jax.ensembles import ensemble as ensemble_lib
from bilstm_jax.ensembles import hparams as hparams_lib
from bilstm_jax.ensembles import population as population_lib
from bilstm_jax.ensembles import sweep
from bilstm_jax.parallel import distributed, sharding
from bilstm_jax.training import inference, loop, monitor, optim, program
from bilstm_jax.training import workdir as workdir_lib
from bilstm_jax.training.optim import DEFAULT_MOMENTUM, OPTIMIZERS, SCHEDULES


def _check(ok: bool, key: str, value, need: str) -> None:
  if not ok:
    raise errors.ConfigError(f'config.{key}={value!r}: {need}.')


def validate(config) -> None:
  """Raises ConfigError naming the first config value that cannot work."""
  m, d, t, o = config.model, config.data, config.train, config.optim
  task_class = tasks.task_class(d.task)  # a ConfigError naming data.task if it is no Task
  _check(m.hidden_size >= 1, 'model.hidden_size', m.hidden_size, 'must be >= 1')
  _check(m.num_layers >= 1, 'model.num_layers', m.num_layers, 'must be >= 1')
  _check(0.0 <= m.dropout < 1.0, 'model.dropout', m.dropout, 'must lie in [0, 1)')
  _check(m.dtype in ('float32', 'bfloat16'), 'model.dtype', m.dtype, "'float32' or 'bfloat16'")
  _check(o.name in OPTIMIZERS, 'optim.name', o.name, f'must be one of {list(OPTIMIZERS)}')
  _check(o.schedule in SCHEDULES, 'optim.schedule', o.schedule, f'one of {list(SCHEDULES)}')
  _check(
    math.isfinite(o.learning_rate) and o.learning_rate >= 0,
    'optim.learning_rate',
    o.learning_rate,
    'must be finite and >= 0',
  )
  adversarial = m.get('adversarial', 0.0)
  _check(
    math.isfinite(adversarial) and adversarial >= 0,
    'model.adversarial',
    adversarial,
    'must be finite and >= 0',
  )
  momentum = o.get('momentum', DEFAULT_MOMENTUM)
  _check(0.0 <= momentum < 1.0, 'optim.momentum', momentum, 'must lie in [0, 1)')
  for key in ('weight_decay', 'grad_clip_norm', 'warmup_steps', 'decay_every_steps'):
    value = o.get(key, 0)
    _check(math.isfinite(value) and value >= 0, f'optim.{key}', value, 'must be finite and >= 0')
  seed = config.get('seed', 0)
  _check(isinstance(seed, int) and seed >= 0, 'seed', seed, 'must be an integer >= 0')
  _check(t.batch_size >= 1, 'train.batch_size', t.batch_size, 'must be >= 1')
  _check(t.epochs >= 0, 'train.epochs', t.epochs, 'must be >= 0')
  _check(t.num_steps >= 0, 'train.num_steps', t.num_steps, 'must be >= 0')
  _check(t.epochs > 0 or t.num_steps > 0, 'train.epochs', t.epochs, 'or train.num_steps > 0')
  _check(t.log_every_epochs >= 1, 'train.log_every_epochs', t.log_every_epochs, 'must be >= 1')
  _check(t.steps_per_call >= 0, 'train.steps_per_call', t.steps_per_call, 'must be >= 0')
  _check(t.metric_mode in ('min', 'max'), 'train.metric_mode', t.metric_mode, "'min' or 'max'")
  patience = t.get('early_stopping_patience', 0)
  _check(patience >= 0, 'train.early_stopping_patience', patience, 'must be >= 0 (0: never)')
  keep = config.get('checkpoint', {}).get('keep_best', 1)
  _check(keep >= 1, 'checkpoint.keep_best', keep, 'must be >= 1')
  buckets = d.get('buckets', 0)
  _check(buckets >= 0, 'data.buckets', buckets, 'must be >= 0 (0: no length buckets)')
  widths = d.get('width_buckets', 0)
  _check(widths >= 0, 'data.width_buckets', widths, 'must be >= 0 (0: no width buckets)')
  _validate_sizes(d)
  if config.get('ensemble') is not None:
    e = config.ensemble
    _check(e.num_members >= 1, 'ensemble.num_members', e.num_members, 'must be >= 1')
    mode = e.get('data_mode', 'shared')
    modes = ensemble_lib.DATA_MODES
    _check(mode in modes, 'ensemble.data_mode', mode, f'must be one of {list(modes)}')
    _check(
      not buckets or mode in ensemble_lib.BUCKETED_MODES,
      'ensemble.data_mode',
      mode,
      f'needs data.buckets=0 (its members see different lengths; data.buckets={buckets} '
      'works with shared or shuffled)',
    )
    hparams_lib.member_ranges(config)  # an explicit range must contain the config's value
  task_class.validate_config(config)  # the keys only the task knows (word vectors, ...)


def _validate_sizes(d) -> None:
  """The synthetic tasks' sizes (other tasks take them from their data files)."""
  for key in ('seq_len', 'input_size', 'output_size', 'num_train', 'num_dev'):
    value = d.get(key)
    if value is not None:
      _check(value >= 1, f'data.{key}', value, 'must be >= 1')
  low, seq_len = d.get('min_length'), d.get('seq_len')
  if low is not None and seq_len is not None:
    _check(1 <= low <= seq_len, 'data.min_length', low, f'must lie in [1, data.seq_len={seq_len}]')


def load_task_data(config) -> tuple[tasks.Task, dict, dict]:
  """The config's task fitted on its training source (`Task.fit`), and the train and dev
  sets it reads."""
  task = tasks.from_config(config)
  widths = config.data.get('width_buckets', 0)
  _check(
    not widths or bool(task.width_keys),
    'data.width_buckets',
    widths,
    f'needs a task with a width axis to cut (data.task={config.data.task!r} has none here; '
    'the text tasks have one with character features, model.chars); set it to 0',
  )
  task = task.fit('train')
  train_set = task.read('train')
  dev_set = task.read('dev')
  return task, train_set, dev_set


def optimizer_spec(optim_config) -> optim.OptimizerSpec:
  """The config's `optim` block as typed settings (absent keys take their defaults)."""
  fields = {f.name for f in dataclasses.fields(optim.OptimizerSpec)}
  return optim.OptimizerSpec(**{k: v for k, v in optim_config.items() if k in fields})


def run_shape(config) -> program.RunShape:
  """How the run walks its data: `seed`, the `train` block's order, `data.buckets` and
  `data.width_buckets`."""
  t = config.train
  return program.RunShape(
    seed=config.seed,
    batch_size=t.batch_size,
    epochs=t.epochs,
    num_steps=t.num_steps,
    shuffle=t.shuffle,
    steps_per_call=t.steps_per_call,
    num_buckets=config.data.get('buckets', 0),
    num_width_buckets=config.data.get('width_buckets', 0),
  )


def make_mesh(config):
  """The device mesh of `config.mesh` (axis sizes; absent: every device on `data`)."""
  sizes = dict(config.get('mesh') or {})
  unknown = sorted(set(sizes) - set(sharding.AXES))
  if unknown:
    raise ValueError(f'Unknown mesh axes {unknown}; known: {list(sharding.AXES)}.')
  return sharding.make_mesh(**sizes)


def initialize_distributed(config) -> bool:
  """`distributed.initialize` with `config.distributed`'s fields (none: one process)."""
  dist = config.get('distributed')
  return distributed.initialize(**dict(dist)) if dist is not None else False


def build_program(config, task, train_set: dict, dev_set: dict, mesh, workdir: str):
  """The config's `Program`: a population for an `ensemble` block, else one model."""
  common = dict(
    task=task,
    train_set=train_set,
    dev_set=dev_set,
    mesh=mesh,
    optimizer=optimizer_spec(config.optim),
    shape=run_shape(config),
  )
  if config.get('ensemble') is None:
    return program.single_model(workdir=workdir, **common)
  e = config.ensemble
  ranges = hparams_lib.member_ranges(config)
  hparams = hparams_lib.sample_hparams(e.num_members, ranges, e.sampling, config.seed)
  return population_lib.population(hparams=hparams, data_mode=e.data_mode, **common)


def prepare(config, workdir: str):
  """Everything a run needs before it touches the disk: (task, program, mesh, settings).

  Raises:
    errors.RunError: a bad config value or data file (ValueErrors become ConfigErrors).
  """
  validate(config)
  try:
    task, train_set, dev_set = load_task_data(config)
    mesh = make_mesh(config)
    prog = build_program(config, task, train_set, dev_set, mesh, workdir)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from e
  metric = config.train.metric
  if metric not in prog.metrics:
    raise errors.ConfigError(
      f'config.train.metric={metric!r}: must be one of {list(prog.metrics)} for this task.'
    )
  settings = loop.Settings(
    log_every_epochs=config.train.log_every_epochs,
    save_every_steps=config.checkpoint.save_every_steps,
    metric=metric,
    metric_mode=config.train.metric_mode,
    early_stopping_patience=config.train.early_stopping_patience,
  )
  return task, prog, mesh, settings


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (or resumes) the run a config describes in `workdir`; returns the summary.

  Raises:
    errors.RunError: a bad config or data (before anything is written), a workdir in use
      or holding an incompatible run, or a NaN/inf loss (the last good checkpoint stays).
  """
  initialize_distributed(config)  # before any other JAX computation
  if config.get('sweep') is not None:
    return sweep.run(config, workdir, train_and_evaluate)
  task, prog, mesh, settings = prepare(config, workdir)
  config_dict = config.to_dict()
  if config.get('ensemble') is not None:  # config.json records the ranges the members used
    config_dict['ensemble'].update(hparams_lib.member_ranges(config))
  writer = distributed.is_writer()
  workdir_lib.create(workdir)
  lock = workdir_lib.Lock(workdir).acquire() if writer else None
  try:
    workdir_lib.check_config(workdir, config_dict)
    workdir_lib.check_task(workdir, task.spec())
    return _run(config_dict, workdir, task, prog, mesh, settings, writer, config)
  finally:
    if lock is not None:
      lock.release()


def _run(config_dict, workdir, task, prog, mesh, settings, writer, config) -> dict:
  ckpts = workdir_lib.open_checkpoints(
    workdir, settings.metric, settings.metric_mode, config.checkpoint.keep_best
  )
  state, rng = prog.init()
  state, rng, progress = loop.restore_or_start(prog, ckpts, state, rng, config_dict)
  # Every process runs the loop; only process 0 writes the shared files (checkpoints are
  # written by all processes together, orbax coordinates them).
  path = os.path.join(workdir, 'metrics.jsonl')
  if writer:
    workdir_lib.write_json(os.path.join(workdir, workdir_lib.CONFIG), config_dict)
    task.save_artifacts(workdir)  # before task.json, which names them
    workdir_lib.write_json(os.path.join(workdir, workdir_lib.TASK), task.spec())
    mon = monitor.Monitor(workdir, prog.total_steps, start_step=progress.step)
  else:
    mon = distributed.Muted(path=path)
  if progress.step:
    mon.event('resume', step=progress.step, epoch=progress.epoch, batch=progress.batch)
  else:
    mon.hparams(config_dict)
    mon.event('start', step=0, **prog.start_info(state), steps_per_epoch=prog.steps_per_epoch)
  start = time.perf_counter()
  try:
    if not progress.stopped_early:
      state = loop.train(prog, settings, ckpts, mon, state, rng, progress, config_dict)
    wall = time.perf_counter() - start
    summary, lines = prog.finish(state, wall)
    best = ckpts.best_step()
    summary.update(
      best_checkpoint=ckpts.path(best) if best is not None else None,
      **sharding.describe(mesh),  # num_devices, num_processes, mesh
      history=loop.eval_history(mon),
    )
    if writer:
      workdir_lib.write_json(os.path.join(workdir, 'summary.json'), summary)
    skip = ('history', 'members')
    mon.event('end', **{k: v for k, v in summary.items() if k not in skip})
    for line in lines:
      mon.print(line)
    return summary
  finally:
    history = loop.eval_history(mon)
    if history and writer:
      plots.loss_curves(history, os.path.join(workdir, 'plots', 'loss.png'), prog.loss_labels)
    mon.close()
    ckpts.close()


def load_latest(config, workdir: str):
  """The newest complete checkpoint of the run in `workdir`, restored in this process.

  Works for single models and ensembles alike (the state is built as training builds it).

  Returns:
    (step, state, rng, meta): meta holds 'progress', 'config' and 'metrics'.
  """
  _, prog, _, settings = prepare(config, workdir)
  state, rng = prog.init()
  ckpts = workdir_lib.open_checkpoints(
    workdir, settings.metric, settings.metric_mode, config.checkpoint.keep_best, read_only=True
  )
  try:
    step = ckpts.latest_step()
    if step is None:
      raise errors.CheckpointError(f'No complete checkpoint in {workdir}/checkpoints.')
    state, rng, meta = ckpts.restore(step, state, rng)
  finally:
    ckpts.close()
  return step, state, rng, meta


TEST_SCORES = 'test_scores.jsonl'  # every scoring of a config's official test split


def evaluate(config, workdir: str, which: str = 'best') -> dict:
  """Scores a checkpoint on `config.data.test` (a split or a file); prints one JSON line,
  writes WORKDIR/evaluate.json, returns the result.

  `data.test=test` names the config's official test split: its `data.test_file`, or the
  task's own test split where the task has one (ETT's test range). Every scoring of it, by
  any name, appends a line to WORKDIR/test_scores.jsonl: the time, the commit, the command
  and the metrics, so the looks at test can be counted.
  """
  trained = inference.load(workdir, which, config)
  test_file = config.data.get('test_file') or ''
  data = test_file if config.data.test == 'test' and test_file else config.data.test
  metrics = trained.evaluate(data)
  result = {
    'data': data,
    'checkpoint': trained.checkpoint,
    'step': int(os.path.basename(trained.checkpoint)),
    **metrics,
  }
  print(json.dumps(result))
  if distributed.is_writer():
    workdir_lib.write_json(os.path.join(workdir, 'evaluate.json'), result)
    official = data == 'test' or (  # a task's own test split (ETT's test range) or the file
      test_file and _same_file(trained.task.resolve(data), trained.task.resolve(test_file))
    )
    if official:
      workdir_lib.append_jsonl(os.path.join(workdir, TEST_SCORES), _test_record(result))
  return result


def _same_file(a: str, b: str) -> bool:
  try:
    return os.path.samefile(a, b)
  except OSError:
    return False


def _test_record(result: dict) -> dict:
  """A test_scores.jsonl line: when, which commit, which command, what it scored."""
  here = os.path.dirname(os.path.abspath(__file__))

  def git(*args):
    try:
      done = subprocess.run(
        ['git', '-C', here, *args], capture_output=True, text=True, timeout=10, check=True
      )
      return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
      return None

  commit = git('rev-parse', 'HEAD')
  if commit and git('status', '--porcelain', '--untracked-files=no'):
    commit += '+dirty'
  return {
    'time': time.strftime('%Y-%m-%dT%H:%M:%S%z'),
    'commit': commit,
    'command': shlex.join([os.path.basename(sys.argv[0]), *sys.argv[1:]]),
    **result,
  }


def predict(config, workdir: str, source: str, output: str, which: str = 'best') -> str:
  """Writes predictions for `source` (a split or file) to `output`; returns its path.

  `output` ending in .jsonl (or any other suffix) gets the task's readable records, one
  JSON line each, the very records `bilstm_jax.load(workdir).predict(source)` returns;
  .conll or .tsv a tagger's records as CoNLL columns; .npz the raw prediction arrays.
  """
  if not output:
    raise errors.ConfigError('--mode=predict needs --output (a .jsonl or .npz path).')
  trained = inference.load(workdir, which, config)
  n = trained.write_predictions(source, output)
  print(
    json.dumps(
      {'input': source, 'output': output, 'checkpoint': trained.checkpoint, 'num_examples': n}
    )
  )
  return output


__all__ = ['evaluate', 'load_latest', 'predict', 'prepare', 'train_and_evaluate', 'validate']
