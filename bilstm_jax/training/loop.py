"""Training: state, a pure jitted step, evaluation and the loop behind `train.py`.

The loop trains whatever a config describes through one code path: its parts that depend
on what is trained (build the state, the compiled multi-step, a chunk's batches, the dev
metrics, the final summary) are the methods of a `Parts` object: `SingleModel` for one
model, `population.Population` for a config with an `ensemble` block (N stacked members).
Checkpoints and exact resume, early stopping, `train.num_steps`, schedules, sharding,
TensorBoard and plots are the loop's, so every config gets them.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from collections.abc import Callable
from typing import Protocol

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.training import train_state

from bilstm_jax import errors, losses, tasks
from bilstm_jax.data import batching as data_lib
from bilstm_jax.parallel import distributed, sharding
from bilstm_jax.training import checkpoint, export, monitor, optim, plots


class TrainState(train_state.TrainState):
  """Flax's TrainState: step, apply_fn, params, tx, opt_state."""


# Compiler options for programs that run once, such as building the initial state: no LLVM
# optimisations. XLA's CPU backend takes about 0.23 s to compile each random-number draw
# optimised and 0.05 s unoptimised, and the single call is no slower. At the default config
# the state's program compiles in 0.2 s instead of 0.8 s. The values can differ from an
# optimised build's in the last bit (where LLVM would contract a multiply-add).
RUN_ONCE = {'xla_backend_optimization_level': 0}


def key_seed(seed: int) -> np.uint32:
  """`seed` as the 32 bits `jax.random.key(seed)` uses, to pass into a jitted program.

  A Python int argument of a jitted function becomes int32 and overflows at 2**31, while
  `jax.random.key` of a Python int keeps its low 32 bits (checked for -5 .. 2**33).
  """
  return np.uint32(seed & 0xFFFFFFFF)


def init_train_state(rng: jax.Array, model, tx, inputs: jax.Array, lengths: jax.Array):
  """Traceable: parameters initialised from the inputs' shapes, wrapped with `tx`."""
  params = model.init(rng, inputs, lengths)['params']
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx)


def create_train_state(
  rng: jax.Array, model, tx, sample_batch: dict, compiler_options: dict | None = None
) -> TrainState:
  """Initialises parameters from a sample batch's shapes and wraps them with `tx`.

  One jitted program for the parameters and the optimiser state: run eagerly, every
  initialiser and every optimiser buffer would compile a program of its own.

  Args:
    rng, model, tx, sample_batch: the key, the Flax module, the optax transformation and a
      batch ({'inputs', 'lengths'}) whose shapes the parameters are built for.
    compiler_options: for that program, e.g. `RUN_ONCE` (as the training loop uses).
      JAX takes them only on a top-level jit, so the default is none: the function then
      also works inside a caller's `jax.jit`.
  """
  init = jax.jit(
    functools.partial(init_train_state, model=model, tx=tx), compiler_options=compiler_options
  )
  return init(rng, inputs=sample_batch['inputs'], lengths=sample_batch['lengths'])


def train_step(
  state: TrainState, batch: dict, rng: jax.Array, loss_fn: Callable = losses.masked_mse
) -> tuple[TrainState, dict]:
  """One optimiser step on the mean loss over the batch's real steps.

  Args:
    state: the current TrainState.
    batch: {'inputs': float[B, T, F], 'lengths': int[B], 'targets': ...}.
    rng: a base key; folded with `state.step` so dropout differs every step.
    loss_fn: (predictions, batch) -> (sum, weight).

  Returns:
    (new state, {'loss': mean loss, 'loss_sum': sum, 'weight': weight}).
  """
  rng = jax.random.fold_in(rng, state.step)

  def objective(params):
    preds = state.apply_fn(
      {'params': params},
      batch['inputs'],
      batch['lengths'],
      deterministic=False,
      rngs={'dropout': rng},
    )
    total, weight = loss_fn(preds, batch)
    return total / jnp.maximum(weight, 1.0), (total, weight)

  (loss, (total, weight)), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads)
  return state, {'loss': loss, 'loss_sum': total, 'weight': weight}


def train_steps(
  state: TrainState, batches: dict, rng: jax.Array, loss_fn: Callable = losses.masked_mse
) -> tuple[TrainState, dict]:
  """Several `train_step`s in one compiled call: `batches` has a leading step axis.

  Returns the final state and the metrics' sums over the steps ('loss_sum', 'weight').
  """

  def body(state, batch):
    state, metrics = train_step(state, batch, rng, loss_fn)
    return state, metrics

  state, metrics = jax.lax.scan(body, state, batches)
  return state, {'loss_sum': metrics['loss_sum'].sum(), 'weight': metrics['weight'].sum()}


def eval_step(state: TrainState, batch: dict, loss_fn: Callable = losses.masked_mse) -> dict:
  """Loss sums on a batch without dropout: {'loss_sum', 'weight'}."""
  preds = state.apply_fn({'params': state.params}, batch['inputs'], batch['lengths'])
  total, weight = loss_fn(preds, batch)
  return {'loss_sum': total, 'weight': weight}


def evaluate(eval_fn, state, dataset: dict, batch_size: int) -> float:
  """Mean loss over a whole dataset; the short last batch is padded and weighs nothing."""
  sums = [
    eval_fn(state, b)
    for b in data_lib.batches(dataset, batch_size, shuffle=False, drop_remainder=False)
  ]
  total = sum(float(s['loss_sum']) for s in sums)
  weight = sum(float(s['weight']) for s in sums)
  return total / max(weight, 1.0)


def target_variance(dataset: dict) -> float:
  """Variance of the targets over real steps: the MSE of predicting their mean."""
  mask = np.arange(dataset['targets'].shape[1])[None, :] < dataset['lengths'][:, None]
  return float(dataset['targets'][mask].var())


def write_json(path: str, obj) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _steps_chunks(num_steps: int, steps_per_call: int) -> list[tuple[int, int]]:
  size = num_steps if steps_per_call <= 0 else steps_per_call
  return [(s, min(s + size, num_steps)) for s in range(0, num_steps, size)]


# The loop behind `train.py --mode=train`, in small parts: plan, build, restore, run a
# chunk, log, save, finish. Saves and logs happen at chunk boundaries only, so a resumed
# run replays exactly the compiled calls an uninterrupted run makes.


_MAX_PENDING = 64


@dataclasses.dataclass
class Progress:
  """Where a run stands; saved in every checkpoint so a resumed run continues exactly.

  Attributes:
    epoch, batch: the data-iterator position: the next batch to train on (epochs count
      from 1; batch order is a pure function of (seed, epoch), see `data.epoch_order`).
    step: optimiser steps done (host copy of `state.step`, so no sync is needed).
    window: train-loss sums since the last log, on the host (`fetch_window`).
    pending: the sums of the chunks run since the window was last fetched, still on device
      (adding them there would compile programs of its own, and adding them here would
      wait for each chunk).
    best, bad_evals: early stopping: the best dev metric so far and evaluations since.
    stopped_early: the run ended by early stopping.
  """

  epoch: int = 1
  batch: int = 0
  step: int = 0
  window: dict = dataclasses.field(default_factory=lambda: {'loss_sum': 0.0, 'weight': 0.0})
  pending: list = dataclasses.field(default_factory=list)
  best: float | None = None
  bad_evals: int = 0
  stopped_early: bool = False

  def add_sums(self, sums: dict) -> None:
    self.pending.append(sums)
    if len(self.pending) >= _MAX_PENDING:  # bounded, however rarely the run logs
      self.fetch_window()

  def fetch_window(self) -> dict:
    """The window with the pending sums added in order, in float32 as on device."""
    # One fetch for all of them (one gather when per-member sums span processes).
    for sums in sharding.host_copy(self.pending):
      self.window = {k: np.float32(self.window[k]) + v for k, v in sums.items()}
    self.pending = []
    return self.window

  def to_meta(self) -> dict:
    meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    del meta['pending']
    # Fetched once per save; a float, or a list for an ensemble's per-member sums.
    meta['window'] = {k: np.asarray(v).tolist() for k, v in self.fetch_window().items()}
    return meta

  @classmethod
  def from_meta(cls, meta: dict) -> Progress:
    fields = {f.name for f in dataclasses.fields(cls)}
    progress = cls(**{k: v for k, v in meta.items() if k in fields})
    progress.window = {k: np.asarray(v, np.float32) for k, v in progress.window.items()}
    return progress


class Parts(Protocol):
  """The parts of the loop that depend on what is trained (one model, or a population).

  Attributes:
    metrics: the names `train.metric` may take (scalar entries of the metrics dicts).
    loss_labels: {metric: label} of the curves in plots/loss.png (None: the default two).
  """

  metrics: tuple[str, ...]
  loss_labels: dict | None

  def examples_per_epoch(self, config, train_set: dict) -> int:
    """Examples one model sees per epoch (`plan` counts steps from it)."""

  def compile(self, config, task, mesh, batch_size: int) -> tuple[nn.Module, Callable, Callable]:
    """(model, multi_step(state, batches, rng) -> (state, sums), eval_fn(state, batch))."""

  def init(self, run: Run) -> tuple:
    """A fresh (state, rng) from `config.seed`, placed on the run's mesh."""

  def epoch_batches(self, run: Run, epoch: int) -> list[dict]:
    """This process's rows of each of `epoch`'s batches, in order."""

  def stack(self, batches: list[dict]) -> dict:
    """The batches of one compiled call, stacked as `multi_step` takes them."""

  def train_metrics(self, window: dict) -> dict:
    """{'train_loss': float, ...} from the loss sums since the last log (fetches them)."""

  def evaluate(self, run: Run, state) -> dict:
    """Dev metrics: the scalars of `metrics` and any per-member lists."""

  def start_info(self, state) -> dict:
    """Extra fields of the 'start' event (e.g. num_params)."""

  def log_line(self, metrics: dict) -> str:
    """What an evaluation prints after its epoch and step."""

  def finish(self, run: Run, state, mon: monitor.Monitor, wall: float, ckpts) -> dict:
    """Final evaluation, summary.json and outputs; returns the summary."""


@dataclasses.dataclass
class Run:
  """What the parts of the loop share: config, data, model and the compiled functions."""

  config: ml_collections.ConfigDict
  workdir: str
  task: tasks.Task
  model: nn.Module
  train_set: dict
  dev_set: dict
  steps_per_epoch: int
  total_steps: int
  multi_step: Callable
  eval_fn: Callable
  mesh: jax.sharding.Mesh  # the devices of all processes; see `sharding.make_mesh`
  parts: Parts  # what depends on the kind of run: `SingleModel` or `population.Population`


def load_datasets(config, task: tasks.Task) -> tuple[dict, dict]:
  """The train and dev sets, validated against the model's input size."""
  train_set = task.load(config.data, 'train')
  dev_set = task.load(config.data, 'dev')
  data_lib.check_batch(train_set, config.data.input_size)
  data_lib.check_batch(dev_set, config.data.input_size)
  if config.train.batch_size > len(train_set['lengths']):
    raise ValueError(
      f'train.batch_size={config.train.batch_size} is larger than the training set '
      f'({len(train_set["lengths"])} examples).'
    )
  return train_set, dev_set


def plan(config, num_train: int) -> tuple[int, int]:
  """(steps per epoch, total steps): `train.num_steps` if > 0, else `train.epochs` epochs."""
  steps_per_epoch = data_lib.num_batches(num_train, config.train.batch_size, True)
  if config.train.num_steps > 0:
    return steps_per_epoch, config.train.num_steps
  return steps_per_epoch, config.train.epochs * steps_per_epoch


def is_ensemble(config) -> bool:
  """Whether `config` trains a population (it has an `ensemble` block)."""
  return config.get('ensemble') is not None


def make_parts(config, train_set: dict) -> Parts:
  """`population.Population` for a config with an `ensemble` block, else `SingleModel`."""
  if not is_ensemble(config):
    return SingleModel()
  from bilstm_jax.ensembles import population

  return population.Population(config, train_set)


def make_run(config, workdir: str) -> Run:
  """Loads the data, builds the model and compiles the train and eval functions."""
  task = tasks.get_task(config.data.task)
  train_set, dev_set = load_datasets(config, task)
  parts = make_parts(config, train_set)
  if config.train.metric not in parts.metrics:
    raise ValueError(f'train.metric must be one of {parts.metrics}; got {config.train.metric!r}.')
  steps_per_epoch, total_steps = plan(config, parts.examples_per_epoch(config, train_set))
  mesh = sharding.make_mesh(config.get('mesh'))
  batch_size = config.train.batch_size
  sharding.check_batch_size(batch_size, mesh)
  model, multi_step, eval_fn = parts.compile(config, task, mesh, batch_size)
  return Run(
    config=config,
    workdir=workdir,
    task=task,
    model=model,
    train_set=train_set,
    dev_set=dev_set,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    multi_step=multi_step,
    eval_fn=eval_fn,
    mesh=mesh,
    parts=parts,
  )


def build_state(run: Run) -> tuple[TrainState, jax.Array]:
  """A fresh single-model TrainState and the base dropout rng, both from `config.seed`."""
  sample = next(data_lib.batches(run.train_set, run.config.train.batch_size, shuffle=False))
  tx = optim.make_optimizer(run.config.optim, run.total_steps)

  def build(seed, inputs, lengths):  # the keys too, in the same single program
    init_rng, step_rng = jax.random.split(jax.random.key(seed))
    return init_train_state(init_rng, run.model, tx, inputs, lengths), step_rng

  build = jax.jit(build, compiler_options=RUN_ONCE)
  return build(key_seed(run.config.seed), sample['inputs'], sample['lengths'])


class SingleModel:
  """The `Parts` of a single-model run: the default."""

  metrics = ('dev_loss', 'train_loss')
  loss_labels = None

  def examples_per_epoch(self, config, train_set: dict) -> int:
    return len(train_set['lengths'])

  def compile(self, config, task, mesh, batch_size: int):
    # The jitted steps see global arrays: each batch split over the mesh's `data` axis (the
    # train step gets this process's rows, evaluation whole batches), the state as placed.
    multi_step = jax.jit(functools.partial(train_steps, loss_fn=task.loss_fn), donate_argnums=0)
    eval_fn = jax.jit(functools.partial(eval_step, loss_fn=task.loss_fn))
    return (
      task.make_model(config.model, config.data),
      sharding.data_parallel(multi_step, mesh, batch_size, batch_axis=1),
      sharding.data_parallel(eval_fn, mesh, batch_size, global_rows=True),
    )

  def init(self, run: Run) -> tuple[TrainState, jax.Array]:
    state, rng = build_state(run)
    # On the mesh: replicated (or split over `model`); a restored checkpoint keeps this.
    placement = (sharding.state_sharding(state, run.mesh), sharding.replicated(run.mesh))
    return sharding.put((state, rng), placement)

  def epoch_batches(self, run: Run, epoch: int) -> list[dict]:
    cfg = run.config
    rows = sharding.local_rows(run.mesh, cfg.train.batch_size)
    return list(
      sharding.process_batches(
        run.train_set,
        cfg.train.batch_size,
        rows,
        seed=cfg.seed,
        epoch=epoch,
        shuffle=cfg.train.shuffle,
      )
    )

  def stack(self, batches: list[dict]) -> dict:
    return data_lib.stack(batches)

  def train_metrics(self, window: dict) -> dict:
    return {'train_loss': float(window['loss_sum']) / max(float(window['weight']), 1.0)}

  def evaluate(self, run: Run, state) -> dict:
    return {'dev_loss': evaluate(run.eval_fn, state, run.dev_set, run.config.train.batch_size)}

  def start_info(self, state) -> dict:
    return {'num_params': int(sum(x.size for x in jax.tree.leaves(state.params)))}

  def log_line(self, metrics: dict) -> str:
    return f'train loss {metrics["train_loss"]:.6f}  dev loss {metrics["dev_loss"]:.6f}'

  def finish(self, run: Run, state, mon: monitor.Monitor, wall: float, ckpts) -> dict:
    """Final evaluation, summary.json, the export and the plots."""
    cfg, bs = run.config, run.config.train.batch_size
    train_mse = evaluate(run.eval_fn, state, run.train_set, bs)
    dev_mse = evaluate(run.eval_fn, state, run.dev_set, bs)
    dev_var = target_variance(run.dev_set)
    steps = int(state.step)
    summary = {
      'task': cfg.data.task,
      'final_train_loss': train_mse,
      'final_dev_loss': dev_mse,
      'dev_target_variance': dev_var,
      'dev_loss_over_variance': dev_mse / dev_var,
      'steps': steps,
      'epochs': cfg.train.epochs,
      'train_wall_s': wall,
      'steps_per_s': steps / wall if wall > 0 else None,
      'num_params': self.start_info(state)['num_params'],
      **run_info(run, mon, ckpts),
    }
    write_summary(run, mon, summary)
    mon.print(
      f'Final MSE: train {train_mse:.6f}  dev {dev_mse:.6f}  '
      f'(dev target variance {dev_var:.4f}; ratio {dev_mse / dev_var:.4f})'
    )
    # On every process: parameters split over the `model` axis of several processes are
    # gathered from all of them (a collective), before process 0 alone exports and plots.
    params = sharding.host_copy(state.params)
    if not distributed.is_writer():
      return summary
    export.export_predict(run.model, params, cfg.data.input_size, _path(run, 'export'))
    apply = jax.jit(
      lambda params, x, n: state.apply_fn({'params': params}, x, n), compiler_options=RUN_ONCE
    )
    preds = np.asarray(apply(params, run.dev_set['inputs'][:4], run.dev_set['lengths'][:4]))
    plots.predictions(preds, run.dev_set, _path(run, 'plots', 'predictions.png'))
    _print_predictions(preds, run.dev_set, mon.print)
    return summary


def open_checkpoints(config, workdir: str, read_only: bool = False) -> checkpoint.Checkpoints:
  return checkpoint.Checkpoints(
    workdir,
    metric=config.train.metric,
    mode=config.train.metric_mode,
    keep_best=config.checkpoint.keep_best,
    read_only=read_only,
  )


def check_workdir(config, workdir: str) -> bool:
  """Raises CheckpointError if `workdir` holds a run of an incompatible config.

  Returns:
    True if the workdir already holds a run (its config.json).
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    return False
  with open(path) as f:
    saved = json.load(f)
  checkpoint.check_compatible(saved, config.to_dict(), path)
  return True


def restore_or_start(run: Run, ckpts, state, rng) -> tuple[TrainState, jax.Array, Progress]:
  """Resumes from the newest complete checkpoint, if any; else the fresh state."""
  step = ckpts.latest_step()
  if step is None:
    return state, rng, Progress()
  state, rng, meta = ckpts.restore(step, state, rng)
  checkpoint.check_compatible(meta['config'], run.config.to_dict(), ckpts.path(step))
  return state, rng, Progress.from_meta(meta['progress'])


def load_latest(config, workdir: str) -> tuple[int, TrainState, jax.Array, dict]:
  """The newest complete checkpoint of the run in `workdir`, restored in this process.

  Works for single models and ensembles alike (the state is built as training builds it).

  Returns:
    (step, state, rng, meta): meta holds 'progress', 'config' and 'metrics'.

  Raises:
    errors.CheckpointError: `workdir` holds no complete checkpoint.
  """
  run = make_run(config, workdir)
  state, rng = run.parts.init(run)
  ckpts = open_checkpoints(config, workdir, read_only=True)
  try:
    step = ckpts.latest_step()
    if step is None:
      raise errors.CheckpointError(f'No complete checkpoint in {workdir}/checkpoints.')
    state, rng, meta = ckpts.restore(step, state, rng)
  finally:
    ckpts.close()
  return step, state, rng, meta


def chunks_from(run: Run, progress: Progress):
  """Yields (epoch, lo, hi): the batch ranges of the compiled calls still to run."""
  epoch, batch, step = progress.epoch, progress.batch, progress.step
  chunks = _steps_chunks(run.steps_per_epoch, run.config.train.steps_per_call)
  while step < run.total_steps:
    for lo, hi in chunks:
      if hi <= batch:
        continue
      hi = min(hi, lo + run.total_steps - step)
      yield epoch, lo, hi
      step += hi - lo
      if step >= run.total_steps:
        return
    epoch, batch = epoch + 1, 0


def run_chunk(run: Run, state, rng, batches: list[dict], progress: Progress) -> TrainState:
  """Trains on `batches` in one compiled call; the loss sums stay on device."""
  state, sums = run.multi_step(state, run.parts.stack(batches), rng)
  progress.add_sums(sums)
  progress.step += len(batches)
  return state


def train_metrics_or_raise(run: Run, progress: Progress, ckpts) -> dict:
  """Fetches the running train loss; a NaN or inf stops the run before anything is saved."""
  metrics = run.parts.train_metrics(progress.fetch_window())
  loss = metrics['train_loss']
  if not np.isfinite(loss):
    last = ckpts.latest_step()
    kept = 'no checkpoint was saved yet' if last is None else f'kept {ckpts.path(last)}'
    raise errors.NonFiniteLossError(
      f'Training stopped: the train loss is {loss} by step {progress.step} (epoch '
      f'{progress.epoch}). The last good checkpoint is {kept}. Lower optim.learning_rate '
      'or set optim.grad_clip_norm.'
    )
  return metrics


def update_early_stopping(config, progress: Progress, value: float) -> None:
  better = (
    progress.best is None
    or (config.train.metric_mode == 'min' and value < progress.best)
    or (config.train.metric_mode == 'max' and value > progress.best)
  )
  progress.best, progress.bad_evals = (
    (value, 0) if better else (progress.best, progress.bad_evals + 1)
  )
  patience = config.train.early_stopping_patience
  progress.stopped_early = patience > 0 and progress.bad_evals >= patience


def save(run: Run, ckpts, state, rng, progress: Progress, metrics: dict) -> None:
  meta = {'progress': progress.to_meta(), 'config': run.config.to_dict(), 'metrics': metrics}
  metric = run.config.train.metric
  ckpts.save(state, rng, meta, {metric: metrics[metric]}, step=progress.step)


class _Timer:
  """Steps and examples per second between log points (host time, after a sync)."""

  def __init__(self, step: int):
    self.step, self.time = step, time.perf_counter()

  def rates(self, step: int, batch_size: int) -> dict:
    now = time.perf_counter()
    per_s = (step - self.step) / max(now - self.time, 1e-9)
    self.step, self.time = step, now
    return {'steps_per_s': per_s, 'examples_per_s': per_s * batch_size}


def train_loop(run: Run, ckpts, mon: monitor.Monitor, state, rng, progress: Progress):
  """Runs the remaining chunks; logs, evaluates, saves and stops early at chunk ends."""
  cfg = run.config
  timer, cache = _Timer(progress.step), {}
  for epoch, lo, hi in chunks_from(run, progress):
    if epoch not in cache:
      cache = {epoch: run.parts.epoch_batches(run, epoch)}
    before = progress.step
    state = run_chunk(run, state, rng, cache[epoch][lo:hi], progress)
    mon.advance(hi - lo)
    progress.epoch, progress.batch = (epoch + 1, 0) if hi == run.steps_per_epoch else (epoch, hi)
    last = progress.step == run.total_steps
    log_now = last or (hi == run.steps_per_epoch and epoch % cfg.train.log_every_epochs == 0)
    every = cfg.checkpoint.save_every_steps
    save_now = log_now or (every > 0 and progress.step // every > before // every)
    if not save_now:
      continue
    train = train_metrics_or_raise(run, progress, ckpts)
    train_loss = train['train_loss']
    metrics = {**run.parts.evaluate(run, state), **train}
    if log_now:
      row = {'epoch': epoch, 'step': progress.step, **metrics}
      row['learning_rate'] = optim.learning_rate_at(
        cfg.optim,
        run.total_steps,
        sharding.host_copy(state.opt_state.hyperparams['learning_rate']),  # may span processes
        progress.step - 1,
      )
      row.update(timer.rates(progress.step, cfg.train.batch_size))
      mon.event('eval', **row)
      mon.scalars(progress.step, row)
      mon.advance(0, train_loss=f'{train_loss:.4g}', dev_loss=f'{metrics["dev_loss"]:.4g}')
      mon.print(f'Epoch {epoch:4d}  step {progress.step:6d}  {run.parts.log_line(metrics)}')
      progress.window = {'loss_sum': 0.0, 'weight': 0.0}
      update_early_stopping(cfg, progress, metrics[cfg.train.metric])
    save(run, ckpts, state, rng, progress, metrics)
    mon.event('checkpoint', step=progress.step, path=ckpts.path(progress.step))
    if progress.stopped_early:
      mon.print(
        f'Early stopping at step {progress.step}: no better {cfg.train.metric} '
        f'in {cfg.train.early_stopping_patience} evaluations.'
      )
      break
  return state


def run_info(run: Run, mon: monitor.Monitor, ckpts) -> dict:
  """The summary fields every run has: best checkpoint, devices and the eval history."""
  best = ckpts.best_step()
  return {
    'best_checkpoint': ckpts.path(best) if best is not None else None,
    **sharding.describe(run.mesh),  # num_devices, num_processes, mesh
    'history': eval_history(mon),
  }


def eval_history(mon: monitor.Monitor) -> list[dict]:
  """The run's 'eval' events so far (metrics.jsonl), oldest first."""
  return [e for e in monitor.read_events(mon.path) if e['event'] == 'eval']


def write_summary(run: Run, mon: monitor.Monitor, summary: dict, skip=('history',)) -> None:
  """summary.json (process 0) and the 'end' event, without the `skip` keys."""
  if distributed.is_writer():
    write_json(os.path.join(run.workdir, 'summary.json'), summary)
  mon.event('end', **{k: v for k, v in summary.items() if k not in skip})


def _path(run: Run, *parts: str) -> str:
  return os.path.join(run.workdir, *parts)


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains (or resumes) the run a config describes in `workdir`; returns the summary.

  Raises:
    errors.CheckpointError: the workdir holds a run of an incompatible config.
    errors.NonFiniteLossError: the loss became NaN or inf (the last good checkpoint stays).
  """
  distributed.initialize(config.get('distributed'))  # before any other JAX computation
  os.makedirs(workdir, exist_ok=True)
  check_workdir(config, workdir)
  run = make_run(config, workdir)
  ckpts = open_checkpoints(config, workdir)
  state, rng = run.parts.init(run)
  state, rng, progress = restore_or_start(run, ckpts, state, rng)
  # Every process runs the loop; only process 0 writes the shared files (checkpoints are
  # written by all processes together, orbax coordinates them).
  if distributed.is_writer():
    write_json(_path(run, 'config.json'), config.to_dict())
    mon = monitor.Monitor(workdir, run.total_steps, start_step=progress.step)
  else:
    mon = distributed.Muted(path=_path(run, 'metrics.jsonl'))
  if progress.step:
    mon.event('resume', step=progress.step, epoch=progress.epoch, batch=progress.batch)
  else:
    mon.hparams(config.to_dict())
    info = run.parts.start_info(state)
    mon.event('start', step=0, **info, steps_per_epoch=run.steps_per_epoch)
  start = time.perf_counter()
  try:
    if not progress.stopped_early:
      state = train_loop(run, ckpts, mon, state, rng, progress)
    jax.block_until_ready(state.params)
    wall = time.perf_counter() - start
    return run.parts.finish(run, state, mon, wall, ckpts)
  finally:
    history = eval_history(mon)
    if history and distributed.is_writer():
      plots.loss_curves(history, _path(run, 'plots', 'loss.png'), run.parts.loss_labels)
    mon.close()
    ckpts.close()


def _print_predictions(preds, dataset: dict, print_fn=print, num_seqs: int = 2, num_steps: int = 5):
  print_fn('Predictions vs targets (dev, first output unit):')
  for s in range(min(num_seqs, len(preds))):
    steps = min(num_steps, int(dataset['lengths'][s]))
    pairs = '  '.join(
      f'{preds[s, t, 0]:+.3f}/{dataset["targets"][s, t, 0]:+.3f}' for t in range(steps)
    )
    print_fn(f'  seq {s}: {pairs}')
