"""A population through the training loop: the `Program` of a config's `ensemble` block.

`population(...)` returns the same kind of `Program` as a single model
(`training.program.single_model`), built from `bilstm_jax.ensembles.ensemble`'s
transforms: the stacked members (`ensemble.create_members`), the vmapped multi-step,
per-member batches, per-member and ensemble dev metrics, and the per-member table at the
end. The loop knows neither builder, so a population gets checkpoints and exact resume
after a kill, early stopping, `train.num_steps`, schedules, TensorBoard and plots.

The rng the loop saves and folds is the members' step keys (key[N]). What the loop logs
and early-stops on, for each metric m of the task (`metrics`):
  train_loss:     the median member's train loss (mean since the last evaluation);
  dev_m:          the best member's dev m (by the metric's direction; `dev_loss` is the
                  default `train.metric`: a sweep's result is its best member, so the run
                  stops when none improves);
  median_dev_m:   the median member's dev m;
  ensemble_dev_m: dev m of the members' combined output (`Task.combine`); so are the
                  task's host metrics (`Task.host_metrics`), computed on it.
Each epoch trains on `Task.epoch_transform` of the training set with the run's seed, one
draw for all members; members of the data modes other than shared take their rows of it.
Diverged members (NaN or inf) are left out of the median and the best; the run stops
with `NonFiniteLossError` only when every member has diverged.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.data import batching
from bilstm_jax.ensembles import ensemble
from bilstm_jax.ensembles.hparams import HPARAMS, with_dropout_layers
from bilstm_jax.parallel import sharding
from bilstm_jax.training import program, steps
from bilstm_jax.training.program import Program

# ------------------------------------------------------------------------------ results


def member_table(hparams: dict, train: dict, dev: dict) -> list[dict]:
  """One row per member: its index, hyperparameters and final metrics.

  Args:
    hparams: {name: float[N]}.
    train: {metric: float[N]}: each member's metrics on the train set.
    dev: {metric: float[N]}: each member's metrics on the dev set.
  """
  n = len(next(iter(train.values())))
  return [
    {
      'member': i,
      **{k: float(v[i]) for k, v in hparams.items()},
      **{f'train_{k}': float(v[i]) for k, v in train.items()},
      **{f'dev_{k}': float(v[i]) for k, v in dev.items()},
    }
    for i in range(n)
  ]


def best_member(rows: list[dict], key: str = 'dev_loss', mode: str = 'min') -> dict:
  """The row with the best finite `key` (diverged members, NaN or inf, never win)."""
  finite = [r for r in rows if np.isfinite(r[key])]
  if not finite:
    raise ValueError(f'No member has a finite {key}.')
  return (min if mode == 'min' else max)(finite, key=lambda r: r[key])


def format_table(rows: list[dict], columns: tuple[str, ...] | None = None) -> str:
  """A fixed-width text table of result rows (the member table, or a sweep's)."""
  if not rows:
    return '(no rows)'
  columns = columns or tuple(rows[0])

  def cell(v):
    if isinstance(v, float):
      return f'{v:.3e}' if 0 < abs(v) < 1e-3 else f'{v:.6f}'
    return str(v)

  cells = [[cell(r.get(c, '')) for c in columns] for r in rows]
  widths = [max(len(c), *(len(row[j]) for row in cells)) for j, c in enumerate(columns)]
  lines = ['  '.join(c.rjust(w) for c, w in zip(columns, widths, strict=True))]
  lines += ['  '.join(v.rjust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
  return '\n'.join(lines)


def _varying_columns(hparams: dict, metrics: tuple[str, ...]) -> tuple[str, ...]:
  varying = [k for k in HPARAMS if k == 'learning_rate' or np.ptp(hparams[k]) > 0]
  return ('member', *varying, 'train_loss', *(f'dev_{m}' for m in metrics))


def _finite(values: np.ndarray) -> np.ndarray:
  values = np.asarray(values)
  return values[np.isfinite(values)]


def _best(values: np.ndarray, mode: str) -> float:
  finite = _finite(values)
  if not finite.size:
    return float('nan')
  return float(finite.min() if mode == 'min' else finite.max())


def _median(values: np.ndarray) -> float:
  finite = _finite(values)
  return float(np.median(finite)) if finite.size else float('nan')


class _TrainClock:
  """Seconds spent training, from the end of the first (compiling) call, without the
  evaluations and saves between calls: the loop fetches the train loss (a sync) before
  each, so a pause starts there and ends when the next call is dispatched."""

  def __init__(self):
    self.compiled, self.since, self.steps, self.seconds = False, None, 0, 0.0

  def called(self, state, steps: int, start: float) -> None:
    if not self.compiled:
      jax.block_until_ready(state.step)
      self.compiled, self.since = True, time.perf_counter()
      return
    if self.since is None:
      self.since = start
    self.steps += steps

  def pause(self) -> None:
    if self.since is not None:
      self.seconds += time.perf_counter() - self.since
      self.since = None

  def steps_per_s(self) -> float | None:
    """None when no call ran after the compiling one (a run of a single call)."""
    return self.steps / self.seconds if self.steps and self.seconds > 0 else None


# ------------------------------------------------------------------------------ program


def population(
  *,
  task,
  train_set: dict,
  dev_set: dict,
  mesh,
  optimizer,
  shape: program.RunShape,
  hparams: dict,
  data_mode: str = 'shared',
) -> Program:
  """The `Program` of N members of `task` trained at once (see the module docstring).

  Args:
    task: the fitted task; its model is built with a nonzero static dropout rate when any
      member's is nonzero (so its dropout layers exist), and each member's own rate is
      substituted at call time.
    hparams: the members' hyperparameters (`hparams.sample_hparams`), float[N] each; N is
      the number of members.
    data_mode: 'shared', 'shuffled', 'bootstrap' or 'subsets' (`ensemble.member_indices`).
      Length buckets (`shape.num_buckets`) need shared or shuffled data (members of the
      other data modes see different lengths, which cannot share one padded shape).

  The other arguments are as for `training.program.single_model`.
  """
  num_members = len(hparams['learning_rate'])
  data = _MemberData(task, train_set, num_members, data_mode, shape.seed)
  _check_buckets(shape.num_buckets, data_mode)
  program.check_batch_size(shape, mesh, data.per_member, "each member's training set")
  sched = program.Schedule.build(shape, optimizer, train_set, data.lengths(0), task)
  batch_size = shape.batch_size
  weight_decay = bool(hparams['weight_decay'].max() > 0)
  tx = sched.make_optimizer(inject_weight_decay=weight_decay)
  clock = _TrainClock()
  multi_step = _multi_step(task, mesh, batch_size, hparams, data.shared, clock)
  eval_fn = sharding.data_parallel(ensemble.make_eval_fn(task), mesh, batch_size, global_rows=True)
  outputs_fn = jax.jit(lambda state, b: {'outputs': task.combine(ensemble.predict(state, b, task))})
  model = with_dropout_layers(task, hparams['dropout']).make_model()

  def init():
    """The stacked members and their step keys, split over the mesh's `member` axis."""
    hp = {k: hparams[k] for k in ('learning_rate', 'init_scale')}
    if weight_decay:
      hp['weight_decay'] = hparams['weight_decay']
    inputs = task.model_inputs(task.example_batch(batch_size, 1))
    init_keys, step_keys = ensemble.member_keys(shape.seed, num_members, steps.RUN_ONCE)
    state = ensemble.create_members(init_keys, model, tx, inputs, hp, steps.RUN_ONCE)
    placement = sharding.member_sharding((state, step_keys), mesh)
    return sharding.put((state, step_keys), placement)

  def evaluate(state, dataset):
    buckets = (sched.buckets, sched.width_buckets)
    return ensemble.evaluate(eval_fn, state, dataset, batch_size, task, *buckets)

  def dev_metrics(state):
    out = _dev_summary(evaluate(state, dev_set), task.metric_modes)
    widths = sched.width_buckets
    host = program.dev_host_metrics(task, outputs_fn, state, dev_set, batch_size, widths)
    return {**out, **{f'ensemble_dev_{k}': v for k, v in host.items()}}

  def train_metrics(window):
    weight = np.maximum(np.asarray(window['weight']), 1.0)
    member = np.asarray(window['loss_sum']) / weight
    clock.pause()  # the fetch above waited for every call dispatched so far
    return {'train_loss': _median(member), 'member_train_loss': member.tolist()}

  def finish(state, wall):
    results = (evaluate(state, train_set), evaluate(state, dev_set))
    return _finish(state, wall, results, task, hparams, data_mode, clock, shape.epochs)

  metric_modes = _metric_modes(task)
  return Program(
    metrics=tuple(metric_modes),
    metric_modes=metric_modes,
    steps_per_epoch=sched.steps_per_epoch,
    total_steps=sched.total_steps,
    batch_size=batch_size,
    init=init,
    epoch=functools.partial(
      _epoch, data=data, sched=sched, rows=sharding.local_rows(mesh, batch_size)
    ),
    train_chunk=lambda state, batches, keys: multi_step(
      state, ensemble.stack_steps(batches, data.shared), keys
    ),
    train_metrics=train_metrics,
    evaluate=dev_metrics,
    learning_rate=sched.learning_rate,
    start_info=functools.partial(_start_info, num_members=num_members, sched=sched),
    log_line=functools.partial(
      _log_line, metrics=task.metrics, host_metrics=tuple(task.host_metric_modes)
    ),
    finish=finish,
    loss_labels={
      'train_loss': 'train loss (median member, mean since the last point)',
      'dev_loss': 'dev loss (best member)',
      'median_dev_loss': 'dev loss (median member)',
      'ensemble_dev_loss': 'dev loss (combined output)',
    },
  )


def _check_buckets(num_buckets: int, data_mode: str) -> None:
  if num_buckets and data_mode not in ensemble.BUCKETED_MODES:
    raise ValueError(
      f'data.buckets={num_buckets} needs ensemble.data_mode=shared or shuffled (members '
      f'of data mode {data_mode!r} see different lengths); set data.buckets=0.'
    )


class _MemberData:
  """The members' training sets: one shared set, or each member's rows of it.

  With `Task.epoch_transform`, every epoch transforms the whole training set (one draw
  of the run's seed, shared by the members) and then takes each member's rows, so the
  rows and their lengths are those the member indices name in every epoch.
  """

  def __init__(self, task, train_set: dict, num_members: int, data_mode: str, seed: int):
    self.task, self.train_set, self.seed = task, train_set, seed
    self.indices = ensemble.member_indices(len(train_set['lengths']), num_members, data_mode, seed)
    self.sets = ensemble.member_data(train_set, self.indices)
    self.shared = self.sets is None
    self.per_member = len(self.lengths(0))

  def lengths(self, i: int) -> np.ndarray:
    """Member i's training lengths (every member's, with shared data)."""
    return (self.sets or [self.train_set])[i]['lengths']

  def epoch(self, e: int) -> dict | list[dict]:
    """Epoch e's training set (shared data), or each member's."""
    data = self.task.epoch_transform(self.train_set, self.seed, e)
    if self.shared:
      return data
    if data is self.train_set:  # no transform: the sets taken once
      return self.sets
    return ensemble.member_data(data, self.indices)


def _epoch(e: int, *, data: _MemberData, sched: program.Schedule, rows):
  """Member i's order is member set i's plan with seed + i (a single run on that set with
  that seed sees the same batches; with buckets, in the calls' order of seed, so every
  member's step has one shape; with width buckets, each call at the widest member's
  width); shared data: one plan for all."""
  task, seed = data.task, sched.shape.seed
  sets = data.epoch(e)
  keys = (task.time_keys, task.width_keys)
  if data.shared:
    p = sched.plan(e, sets['lengths'], widths=sched.example_widths(task, sets))
    return sharding.process_batches(sets, p, rows, *keys), p.chunks
  plans = [
    sched.plan(e, m['lengths'], seed + i, sched.example_widths(task, m)) for i, m in enumerate(sets)
  ]
  plans = batching.common_widths(plans)
  per = [batching.plan_batches(m, p, *keys) for m, p in zip(sets, plans, strict=True)]
  p = plans[-1]
  stacked = [batching.stack(list(b)) for b in zip(*per, strict=True)]
  if len(rows) != sched.shape.batch_size:
    stacked = [sharding.take_rows(b, rows, 1) for b in stacked]
  return stacked, p.chunks


def _multi_step(task, mesh, batch_size: int, hparams: dict, shared: bool, clock: _TrainClock):
  """The vmapped multi-step over the mesh, timed by `clock`."""
  per_member_dropout = bool(hparams['dropout'].max() > 0)
  run_steps = ensemble.make_train_steps(task, shared, per_member_dropout)
  dropout = jnp.asarray(hparams['dropout']) if per_member_dropout else None
  step_axis = 0 if shared else 1

  def multi_step(state, batches, step_keys):
    start = time.perf_counter()
    state, sums = run_steps(state, batches, step_keys, dropout)
    clock.called(state, batches['lengths'].shape[step_axis], start)
    return state, sums

  return sharding.data_parallel(multi_step, mesh, batch_size, batch_axis=step_axis + 1)


def _metric_modes(task) -> dict:
  modes = {'train_loss': 'min'}
  for m, mode in task.metric_modes.items():
    modes.update({f'dev_{m}': mode, f'median_dev_{m}': mode, f'ensemble_dev_{m}': mode})
  modes.update({f'ensemble_dev_{m}': mode for m, mode in task.host_metric_modes.items()})
  return modes


def _dev_summary(dev: dict, metric_modes: dict) -> dict:
  """The logged dev metrics from `ensemble.evaluate`'s: best, median, combined, each."""
  out = {}
  for m, mode in metric_modes.items():
    values = dev['member'][m]
    out[f'dev_{m}'] = _best(values, mode)
    out[f'median_dev_{m}'] = _median(values)
    out[f'ensemble_dev_{m}'] = dev['ensemble'][m]
    out[f'member_dev_{m}'] = np.asarray(values).tolist()
  return out


def _start_info(state, num_members: int, sched: program.Schedule | None = None) -> dict:
  per = sum(x.size // x.shape[0] for x in jax.tree.leaves(state.params))
  buckets = {} if sched is None else sched.bucket_info()
  return {'num_params': int(per), 'num_members': num_members, **buckets}


def _log_line(m: dict, metrics: tuple[str, ...], host_metrics=()) -> str:
  parts = [f'train loss median {m["train_loss"]:.6f}']
  for k in metrics:
    parts.append(
      f'dev {k} best {m[f"dev_{k}"]:.6f} median {m[f"median_dev_{k}"]:.6f} '
      f'ensemble {m[f"ensemble_dev_{k}"]:.6f}'
    )
  parts += [f'ensemble dev {k} {m[f"ensemble_dev_{k}"]:.6f}' for k in host_metrics]
  return '  '.join(parts)


def _finish(state, wall, results, task, hparams, data_mode, clock, epochs):
  """`Program.finish` of a population: the member table, the best member, the ensemble."""
  train, dev = results
  rows = member_table(hparams, train['member'], dev['member'])
  num_members = len(rows)
  n_steps = int(sharding.host_copy(state.step).max())
  rate = clock.steps_per_s()
  rate = None if rate is None else rate * num_members
  best = best_member(rows)
  summary = {
    'task': task.name,
    'num_members': num_members,
    'data_mode': data_mode,
    'members': rows,
    'best_member': best,
    **{f'ensemble_train_{k}': v for k, v in train['ensemble'].items()},
    **{f'ensemble_dev_{k}': v for k, v in dev['ensemble'].items()},
    'steps': n_steps,
    'epochs': epochs,
    'train_wall_s': wall,
    'model_steps_per_s': rate,  # after the first (compiling) call, without evaluations
    'num_params_per_member': _start_info(state, num_members)['num_params'],
  }
  speed = f'{rate:.0f} model-steps/s after compiling' if rate else 'one call: speed not measured'
  lines = [f'Members after {n_steps} steps ({speed}):']
  lines.append(format_table(rows, _varying_columns(hparams, task.metrics)))
  ens = '  '.join(f'dev {k} {v:.6f}' for k, v in dev['ensemble'].items())
  lines.append(
    f'Best member: {best["member"]} (learning_rate {best["learning_rate"]:.4g}, '
    f'dev loss {best["dev_loss"]:.6f}); ensemble (combined output): {ens}'
  )
  return summary, lines
