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
  ensemble_dev_m: dev m of the members' combined output (`Task.combine`).
Diverged members (NaN or inf) are left out of the median and the best; the run stops
with `NonFiniteLossError` only when every member has diverged.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.data import batching
from bilstm_jax.ensembles import ensemble
from bilstm_jax.ensembles.hparams import HPARAMS, with_dropout_layers
from bilstm_jax.parallel import sharding
from bilstm_jax.training import optim, steps
from bilstm_jax.training.program import Program, make_buckets

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
  optim_config,
  seed: int,
  batch_size: int,
  epochs: int,
  num_steps: int,
  shuffle: bool,
  steps_per_call: int,
  num_members: int,
  hparams: dict,
  data_mode: str = 'shared',
  num_buckets: int = 0,
) -> Program:
  """The `Program` of N members of `task` trained at once (see the module docstring).

  Args:
    task: the fitted task; its model is built with a nonzero static dropout rate when any
      member's is nonzero (so its dropout layers exist), and each member's own rate is
      substituted at call time.
    hparams: the members' hyperparameters (`hparams.sample_hparams`).
    data_mode: 'shared', 'shuffled', 'bootstrap' or 'subsets' (`ensemble.member_indices`).
    num_buckets: length buckets; only with shared or shuffled data (members of the other
      data modes see different lengths, which cannot share one padded shape).

  The other arguments are as for `training.program.single_model`.
  """
  n = len(train_set['lengths'])
  indices = ensemble.member_indices(n, num_members, data_mode, seed)
  member_sets = ensemble.member_data(train_set, indices)
  shared = member_sets is None
  if num_buckets and data_mode not in ensemble.BUCKETED_MODES:
    raise ValueError(
      f'data.buckets={num_buckets} needs ensemble.data_mode=shared or shuffled (members of '
      f'data mode {data_mode!r} see different lengths); set data.buckets=0.'
    )
  buckets = make_buckets(train_set, num_buckets)
  per_member = len((member_sets or [train_set])[0]['lengths'])
  if batch_size > per_member:
    raise ValueError(f'train.batch_size={batch_size} > examples per member ({per_member}).')
  sharding.check_batch_size(batch_size, mesh)
  per_member_dropout = bool(hparams['dropout'].max() > 0)
  weight_decay = bool(hparams['weight_decay'].max() > 0)
  model = with_dropout_layers(task, hparams['dropout']).make_model()
  clock = _TrainClock()
  rows = sharding.local_rows(mesh, batch_size)

  def plan(epoch, lengths=train_set['lengths'], member_seed=seed):
    return batching.epoch_plan(
      lengths,
      batch_size,
      seed=member_seed,
      epoch=epoch,
      shuffle=shuffle,
      steps_per_call=steps_per_call,
      buckets=buckets,
      call_seed=seed,
    )

  steps_per_epoch = len(plan(1, (member_sets or [train_set])[0]['lengths']))
  total_steps = num_steps if num_steps > 0 else epochs * steps_per_epoch
  tx = optim.make_optimizer(optim_config, total_steps, inject_weight_decay=weight_decay)
  run_steps = ensemble.make_train_steps(task, shared, per_member_dropout)
  dropout = jnp.asarray(hparams['dropout']) if per_member_dropout else None
  step_axis = 0 if shared else 1

  def multi_step(state, batches, step_keys):
    start = time.perf_counter()
    state, sums = run_steps(state, batches, step_keys, dropout)
    clock.called(state, batches['lengths'].shape[step_axis], start)
    return state, sums

  multi_step = sharding.data_parallel(multi_step, mesh, batch_size, batch_axis=step_axis + 1)
  eval_fn = sharding.data_parallel(ensemble.make_eval_fn(task), mesh, batch_size, global_rows=True)

  def init():
    """The stacked members and their step keys, split over the mesh's `member` axis."""
    hp = {k: hparams[k] for k in ('learning_rate', 'init_scale')}
    if weight_decay:
      hp['weight_decay'] = hparams['weight_decay']
    inputs = task.model_inputs(task.example_batch(batch_size, 1))
    init_keys, step_keys = ensemble.member_keys(seed, num_members, steps.RUN_ONCE)
    state = ensemble.create_members(init_keys, model, tx, inputs, hp, steps.RUN_ONCE)
    placement = sharding.member_sharding((state, step_keys), mesh)
    return sharding.put((state, step_keys), placement)

  def epoch(e):
    """Member i's order is member set i's plan with seed + i (a single run on that set
    with that seed sees the same batches; with buckets, in the calls' order of seed, so
    every member's step has one shape); shared data: one plan for all."""
    if shared:
      p = plan(e)
      return sharding.process_batches(train_set, p, rows, task.time_keys), p.chunks
    per = []
    for i, m in enumerate(member_sets):
      p = plan(e, m['lengths'], seed + i)
      per.append(batching.plan_batches(m, p, task.time_keys))
    stacked = [batching.stack(list(b)) for b in zip(*per, strict=True)]
    if len(rows) != batch_size:
      stacked = [sharding.take_rows(b, rows, 1) for b in stacked]
    return stacked, p.chunks

  def train_chunk(state, batches, step_keys):
    return multi_step(state, ensemble.stack_steps(batches, shared), step_keys)

  def evaluate(state, dataset):
    return ensemble.evaluate(eval_fn, state, dataset, batch_size, task, buckets)

  def dev_metrics(state):
    dev = evaluate(state, dev_set)
    out = {}
    for m, mode in task.metric_modes.items():
      values = dev['member'][m]
      out[f'dev_{m}'] = _best(values, mode)
      out[f'median_dev_{m}'] = _median(values)
      out[f'ensemble_dev_{m}'] = dev['ensemble'][m]
      out[f'member_dev_{m}'] = np.asarray(values).tolist()
    return out

  def train_metrics(window):
    weight = np.maximum(np.asarray(window['weight']), 1.0)
    member = np.asarray(window['loss_sum']) / weight
    clock.pause()  # the fetch above waited for every call dispatched so far
    return {'train_loss': _median(member), 'member_train_loss': member.tolist()}

  def start_info(state):
    per = sum(x.size // x.shape[0] for x in jax.tree.leaves(state.params))
    return {'num_params': int(per), 'num_members': num_members}

  def log_line(m):
    parts = [f'train loss median {m["train_loss"]:.6f}']
    for k in task.metrics:
      parts.append(
        f'dev {k} best {m[f"dev_{k}"]:.6f} median {m[f"median_dev_{k}"]:.6f} '
        f'ensemble {m[f"ensemble_dev_{k}"]:.6f}'
      )
    return '  '.join(parts)

  def finish(state, wall):
    train = evaluate(state, train_set)
    dev = evaluate(state, dev_set)
    rows_ = member_table(hparams, train['member'], dev['member'])
    n_steps = int(sharding.host_copy(state.step).max())
    rate = clock.steps_per_s()
    rate = None if rate is None else rate * num_members
    best = best_member(rows_)
    summary = {
      'task': task.name,
      'num_members': num_members,
      'data_mode': data_mode,
      'members': rows_,
      'best_member': best,
      **{f'ensemble_train_{k}': v for k, v in train['ensemble'].items()},
      **{f'ensemble_dev_{k}': v for k, v in dev['ensemble'].items()},
      'steps': n_steps,
      'epochs': epochs,
      'train_wall_s': wall,
      'model_steps_per_s': rate,  # after the first (compiling) call, without evaluations
      'num_params_per_member': start_info(state)['num_params'],
    }
    speed = f'{rate:.0f} model-steps/s after compiling' if rate else 'one call: speed not measured'
    lines = [f'Members after {n_steps} steps ({speed}):']
    lines.append(format_table(rows_, _varying_columns(hparams, task.metrics)))
    ens = '  '.join(f'dev {k} {v:.6f}' for k, v in dev['ensemble'].items())
    lines.append(
      f'Best member: {best["member"]} (learning_rate {best["learning_rate"]:.4g}, '
      f'dev loss {best["dev_loss"]:.6f}); ensemble (combined output): {ens}'
    )
    return summary, lines

  metric_modes = {'train_loss': 'min'}
  for m, mode in task.metric_modes.items():
    metric_modes.update({f'dev_{m}': mode, f'median_dev_{m}': mode, f'ensemble_dev_{m}': mode})
  return Program(
    metrics=tuple(metric_modes),
    metric_modes=metric_modes,
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    batch_size=batch_size,
    init=init,
    epoch=epoch,
    train_chunk=train_chunk,
    train_metrics=train_metrics,
    evaluate=dev_metrics,
    learning_rate=lambda state, step: optim.learning_rate_at(
      optim_config,
      total_steps,
      sharding.host_copy(state.opt_state.hyperparams['learning_rate']),
      step,
    ),
    start_info=start_info,
    log_line=log_line,
    finish=finish,
    loss_labels={
      'train_loss': 'train loss (median member, mean since the last point)',
      'dev_loss': 'dev loss (best member)',
      'median_dev_loss': 'dev loss (median member)',
      'ensemble_dev_loss': 'dev loss (combined output)',
    },
  )
