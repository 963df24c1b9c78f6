"""The training loop: runs a `Program`, with logging, checkpoints, exact resume, early stop.

The loop knows a `Program` (`bilstm_jax.training.program`) and nothing about what is
trained: one model or a population, of any task. It plans, restores, runs the
compiled calls, logs, evaluates, saves and stops early. Saves and logs happen at the ends
of compiled calls only, so a resumed run replays exactly the calls an uninterrupted run
makes, and ends with bit-identical parameters.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from bilstm_jax import errors, faults
from bilstm_jax.parallel import sharding
from bilstm_jax.training import monitor
from bilstm_jax.training import workdir as workdir_lib

_MAX_PENDING = 64


@dataclasses.dataclass(frozen=True)
class Settings:
  """How the loop logs, saves and stops (the config's `train` and `checkpoint` blocks).

  Attributes:
    log_every_epochs: evaluate and log after every this many epochs (and at the end).
    save_every_steps: > 0: also save at the first call boundary after every N steps.
    metric, metric_mode: the dev metric that ranks checkpoints and stops early.
    early_stopping_patience: stop after this many evaluations without a better metric
      (0: never).
  """

  log_every_epochs: int = 1
  save_every_steps: int = 0
  metric: str = 'dev_loss'
  metric_mode: str = 'min'
  early_stopping_patience: int = 0


@dataclasses.dataclass
class Progress:
  """Where a run stands; saved in every checkpoint so a resumed run continues exactly.

  Attributes:
    epoch, batch: the data-iterator position: the next batch to train on (epochs count
      from 1; batch order is a pure function of (seed, epoch), see `data.epoch_plan`).
    step: optimiser steps done (host copy of `state.step`, so no sync is needed).
    window: train-loss sums since the last log, on the host (`fetch_window`).
    pending: the sums of the calls run since the window was last fetched, still on device
      (adding them there would compile programs of its own, and adding them here would
      wait for each call).
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
    """Queues one call's train-loss sums (still on device); fetched in bounded windows."""
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
    """The progress as JSON-able values for a checkpoint's meta (the window fetched)."""
    meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    del meta['pending']
    # Fetched once per save; a float, or a list for an ensemble's per-member sums.
    meta['window'] = {k: np.asarray(v).tolist() for k, v in self.fetch_window().items()}
    return meta

  @classmethod
  def from_meta(cls, meta: dict) -> Progress:
    """The progress a checkpoint's meta holds (the inverse of `to_meta`)."""
    fields = {f.name for f in dataclasses.fields(cls)}
    progress = cls(**{k: v for k, v in meta.items() if k in fields})
    progress.window = {k: np.asarray(v, np.float32) for k, v in progress.window.items()}
    return progress


def chunks_from(program, progress: Progress):
  """Yields (epoch, lo, hi, batches): the batch ranges of the compiled calls still to run,
  with their epoch's batches (`program.epoch` runs once per epoch: it may transform the
  training set, `Task.epoch_transform`)."""
  epoch, batch, step = progress.epoch, progress.batch, progress.step
  while step < program.total_steps:
    batches, chunks = program.epoch(epoch)
    for lo, hi in chunks:
      if hi <= batch:
        continue
      hi = min(hi, lo + program.total_steps - step)
      yield epoch, lo, hi, batches
      step += hi - lo
      if step >= program.total_steps:
        return
    epoch, batch = epoch + 1, 0


def restore_or_start(program, ckpts, state, rng, config_dict: dict):
  """Resumes from the newest complete, undamaged checkpoint, if any; else the fresh state.

  Returns:
    (state, rng, Progress).
  """
  found = ckpts.restore_good(state, rng)
  if found is None:
    return state, rng, Progress()
  step, state, rng, meta = found
  workdir_lib.check_compatible(meta['config'], config_dict, ckpts.path(step))
  return state, rng, Progress.from_meta(meta['progress'])


def train_metrics_or_raise(program, progress: Progress, ckpts) -> dict:
  """Fetches the running train loss; a NaN or inf stops the run before anything is saved."""
  metrics = program.train_metrics(progress.fetch_window())
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


def update_early_stopping(settings: Settings, progress: Progress, value: float) -> None:
  """Records an evaluation's `value` of the ranking metric in `progress`, and sets
  `stopped_early` after `early_stopping_patience` evaluations without a better one."""
  better = (
    progress.best is None
    or (settings.metric_mode == 'min' and value < progress.best)
    or (settings.metric_mode == 'max' and value > progress.best)
  )
  progress.best, progress.bad_evals = (
    (value, 0) if better else (progress.best, progress.bad_evals + 1)
  )
  patience = settings.early_stopping_patience
  progress.stopped_early = patience > 0 and progress.bad_evals >= patience


class _Timer:
  """Steps and examples per second between log points (host time, after a sync)."""

  def __init__(self, step: int):
    self.step, self.time = step, time.perf_counter()

  def rates(self, step: int, batch_size: int) -> dict:
    now = time.perf_counter()
    per_s = (step - self.step) / max(now - self.time, 1e-9)
    self.step, self.time = step, now
    return {'steps_per_s': per_s, 'examples_per_s': per_s * batch_size}


def train(
  program,
  settings: Settings,
  ckpts,
  mon: monitor.Monitor,
  state,
  rng,
  progress: Progress,
  config_dict: dict,
):
  """Runs the remaining calls; logs, evaluates, saves and stops early at call ends.

  Returns:
    The final state.
  """
  timer = _Timer(progress.step)
  for epoch, lo, hi, batches in chunks_from(program, progress):
    before = progress.step
    faults.point('step')
    state, sums = program.train_chunk(state, batches[lo:hi], rng)
    progress.add_sums(sums)
    progress.step += hi - lo
    mon.advance(hi - lo)
    end_of_epoch = hi == program.steps_per_epoch
    progress.epoch, progress.batch = (epoch + 1, 0) if end_of_epoch else (epoch, hi)
    last = progress.step == program.total_steps
    log_now = last or (end_of_epoch and epoch % settings.log_every_epochs == 0)
    every = settings.save_every_steps
    save_now = log_now or (every > 0 and progress.step // every > before // every)
    if not save_now:
      continue
    train_metrics = train_metrics_or_raise(program, progress, ckpts)
    faults.point('eval')
    metrics = {**program.evaluate(state), **train_metrics}
    if log_now:
      row = {'epoch': epoch, 'step': progress.step, **metrics}
      row['learning_rate'] = program.learning_rate(state, progress.step - 1)
      row.update(timer.rates(progress.step, program.batch_size))
      mon.event('eval', **row)
      mon.scalars(progress.step, row)
      mon.advance(
        0,
        train_loss=f'{metrics["train_loss"]:.4g}',
        **{settings.metric: f'{metrics[settings.metric]:.4g}'},
      )
      mon.print(f'Epoch {epoch:4d}  step {progress.step:6d}  {program.log_line(metrics)}')
      progress.window = {'loss_sum': 0.0, 'weight': 0.0}
      update_early_stopping(settings, progress, metrics[settings.metric])
    meta = {'progress': progress.to_meta(), 'config': config_dict, 'metrics': metrics}
    ckpts.save(state, rng, meta, {settings.metric: metrics[settings.metric]}, step=progress.step)
    mon.event('checkpoint', step=progress.step, path=ckpts.path(progress.step))
    if progress.stopped_early:
      mon.print(
        f'Early stopping at step {progress.step}: no better {settings.metric} '
        f'in {settings.early_stopping_patience} evaluations.'
      )
      break
  jax.block_until_ready(state.params)
  return state


def eval_history(mon: monitor.Monitor) -> list[dict]:
  """The run's 'eval' events so far (metrics.jsonl), oldest first."""
  return [e for e in monitor.read_events(mon.path) if e['event'] == 'eval']
