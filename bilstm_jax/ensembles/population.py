"""Training a population from a config: the ensemble's parts of `train_lib`'s one loop.

A config with an `ensemble` block (`configs/ensemble.py`) trains through the same loop as
a single model (`train_lib.train_and_evaluate`): checkpoints and exact resume after a
kill, early stopping, `train.num_steps`, schedules, TensorBoard, plots. `Population`
supplies the loop's `train_lib.Parts` built from `bilstm_jax.ensembles.ensemble`'s transforms: the
stacked members (`ensemble.create_members`), the vmapped multi-step, per-member batches,
per-member and ensemble dev losses, and the per-member table at the end.

The rng the loop saves and folds is the members' step keys (key[N]). What the loop logs
and early-stops on (`metrics`):
  train_loss:        the median member's train loss (mean since the last evaluation);
  dev_loss:          the best member's dev loss (the default `train.metric`: a sweep's
                     result is its best member, so the run stops when none improves);
  median_dev_loss:   the median member's dev loss;
  ensemble_dev_loss: the dev loss of the members' mean prediction.
Diverged members (NaN or inf) are left out of the median and the best; the run stops
with `NonFiniteLossError` only when every member has diverged.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from bilstm_jax.data import batching as data_lib
from bilstm_jax.ensembles import ensemble
from bilstm_jax.parallel import sharding
from bilstm_jax.training import loop as train_lib
from bilstm_jax.training import monitor, optim

HPARAMS = ('learning_rate', 'weight_decay', 'dropout', 'init_scale')


# ------------------------------------------------------------------------- hyperparams


def sample_hparams(ens_config, seed: int) -> dict[str, np.ndarray]:
  """float32[N] per hyperparameter from the (low, high) ranges of an `ensemble` block.

  low == high gives a constant. Otherwise learning rate, weight decay and init scale are
  log-uniform when low > 0 (uniform if low == 0) and dropout is uniform. With
  `sampling='random'` each is drawn independently (then sorted, member 0 smallest);
  `sampling='grid'` spaces them evenly (in log space where log-uniform).
  """
  n = ens_config.num_members
  out = {}
  for k, name in enumerate(HPARAMS):
    low, high = (float(v) for v in ens_config[name])
    if high < low:
      raise ValueError(f'ensemble.{name}: low {low} > high {high}.')
    log = name != 'dropout' and low > 0
    a, b = (np.log(low), np.log(high)) if log else (low, high)
    if ens_config.sampling == 'grid':
      u = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    elif ens_config.sampling == 'random':
      u = np.sort(np.random.default_rng([seed, 3, k]).uniform(size=n))
    else:
      raise ValueError(f"ensemble.sampling must be 'random' or 'grid'; got {ens_config.sampling!r}")
    v = a + (b - a) * u
    out[name] = (np.exp(v) if log else v).astype(np.float32)
  if not (out['dropout'].min() >= 0.0 and out['dropout'].max() < 1.0):
    raise ValueError('ensemble.dropout must lie in [0, 1).')
  return out


# ------------------------------------------------------------------------------ results


def member_table(hparams: dict, train_loss, dev_loss) -> list[dict]:
  """One row per member: its index, hyperparameters and final losses."""
  return [
    {
      'member': i,
      **{k: float(v[i]) for k, v in hparams.items()},
      'train_loss': float(train_loss[i]),
      'dev_loss': float(dev_loss[i]),
    }
    for i in range(len(train_loss))
  ]


def best_member(rows: list[dict], key: str = 'dev_loss') -> dict:
  """The row with the lowest finite `key` (diverged members, NaN or inf, never win)."""
  finite = [r for r in rows if np.isfinite(r[key])]
  if not finite:
    raise ValueError(f'No member has a finite {key}.')
  return min(finite, key=lambda r: r[key])


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


def final_table(run: train_lib.Run, state, hparams: dict) -> dict:
  """Per-member table on the full train and dev sets, the best member, the ensemble's loss."""
  bs = run.config.train.batch_size
  train = ensemble.evaluate(run.eval_fn, state, run.train_set, bs)
  dev = ensemble.evaluate(run.eval_fn, state, run.dev_set, bs)
  rows = member_table(hparams, train['member_loss'], dev['member_loss'])
  return {
    'members': rows,
    'best_member': best_member(rows),
    'ensemble_train_loss': train['ensemble_loss'],
    'ensemble_dev_loss': dev['ensemble_loss'],
  }


def _varying_columns(hparams: dict) -> tuple[str, ...]:
  varying = [k for k in HPARAMS if k == 'learning_rate' or np.ptp(hparams[k]) > 0]
  return ('member', *varying, 'train_loss', 'dev_loss')


def _finite(values: np.ndarray) -> np.ndarray:
  return values[np.isfinite(values)]


# -------------------------------------------------------------------------------- parts


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


class Population:
  """The `train_lib.Parts` of a run that trains the members of `config.ensemble`.

  `ensemble.dropout` replaces `model.dropout`: when any member's rate is nonzero, the model
  is built with a nonzero static rate (so its dropout layers exist) and every member's own
  rate is substituted at call time.

  Attributes:
    hparams: the members' hyperparameters, host float32[N] each (see `sample_hparams`).
    member_sets: per-member training sets, or None when the members share batches.
  """

  metrics = ('dev_loss', 'median_dev_loss', 'ensemble_dev_loss', 'train_loss')
  loss_labels = {
    'train_loss': 'train loss (median member, mean since the last point)',
    'dev_loss': 'dev loss (best member)',
    'median_dev_loss': 'dev loss (median member)',
    'ensemble_dev_loss': 'dev loss (mean prediction)',
  }

  def __init__(self, config, train_set: dict):
    ens = config.ensemble
    self.num_members = ens.num_members
    self.data_mode = ens.data_mode
    self.hparams = sample_hparams(ens, config.seed)
    n = len(train_set['lengths'])
    indices = ensemble.member_indices(n, self.num_members, ens.data_mode, config.seed)
    self.member_sets = ensemble.member_data(train_set, indices)
    self.per_member_dropout = bool(self.hparams['dropout'].max() > 0)
    self.weight_decay = bool(self.hparams['weight_decay'].max() > 0)
    self.clock = _TrainClock()

  @property
  def shared_data(self) -> bool:
    return self.member_sets is None

  def examples_per_epoch(self, config, train_set: dict) -> int:
    sets = self.member_sets or [train_set]
    per_member = len(sets[0]['lengths'])
    if config.train.batch_size > per_member:
      raise ValueError(
        f'train.batch_size={config.train.batch_size} > examples per member ({per_member}).'
      )
    return per_member

  def compile(self, config, task, mesh, batch_size: int):
    model_config = ml_collections.ConfigDict(config.model.to_dict())
    model_config.dropout = float(self.hparams['dropout'].max())
    steps = ensemble.make_train_steps(task.loss_fn, self.shared_data, self.per_member_dropout)
    dropout = jnp.asarray(self.hparams['dropout']) if self.per_member_dropout else None
    step_axis = 0 if self.shared_data else 1

    def multi_step(state, batches, step_keys):
      start = time.perf_counter()
      state, sums = steps(state, batches, step_keys, dropout)
      self.clock.called(state, batches['lengths'].shape[step_axis], start)
      return state, sums

    eval_fn = ensemble.make_eval_fn(task.loss_fn)
    return (
      task.make_model(model_config, config.data),
      sharding.data_parallel(multi_step, mesh, batch_size, batch_axis=step_axis + 1),
      sharding.data_parallel(eval_fn, mesh, batch_size, global_rows=True),
    )

  def init(self, run: train_lib.Run):
    """The stacked members and their step keys, split over the mesh's `member` axis."""
    cfg = run.config
    tx = optim.make_optimizer(cfg.optim, run.total_steps, inject_weight_decay=self.weight_decay)
    hp = {k: self.hparams[k] for k in ('learning_rate', 'init_scale')}
    if self.weight_decay:
      hp['weight_decay'] = self.hparams['weight_decay']
    sample_set = run.train_set if self.shared_data else self.member_sets[0]
    sample = next(data_lib.batches(sample_set, cfg.train.batch_size, shuffle=False))
    once = train_lib.RUN_ONCE  # top-level programs that run once
    init_keys, step_keys = ensemble.member_keys(cfg.seed, self.num_members, once)
    state = ensemble.create_members(init_keys, run.model, tx, sample, hp, once)
    placement = sharding.member_sharding((state, step_keys), run.mesh)
    return sharding.put((state, step_keys), placement)

  def epoch_batches(self, run: train_lib.Run, epoch: int) -> list[dict]:
    cfg = run.config
    batches = ensemble.epoch_batches(
      run.train_set,
      self.member_sets,
      cfg.train.batch_size,
      seed=cfg.seed,
      epoch=epoch,
      shuffle=cfg.train.shuffle,
    )
    rows = sharding.local_rows(run.mesh, cfg.train.batch_size)
    if len(rows) == cfg.train.batch_size:
      return batches
    axis = 0 if self.shared_data else 1  # per-member batches: [members, batch, ...]
    return [sharding.take_rows(b, rows, axis) for b in batches]

  def stack(self, batches: list[dict]) -> dict:
    return ensemble.stack_steps(batches, self.shared_data)

  def train_metrics(self, window: dict) -> dict:
    weight = np.maximum(np.asarray(window['weight']), 1.0)
    member = np.asarray(window['loss_sum']) / weight
    self.clock.pause()  # the fetch above waited for every call dispatched so far
    finite = _finite(member)
    median = float(np.median(finite)) if finite.size else float('nan')
    return {'train_loss': median, 'member_train_loss': member.tolist()}

  def evaluate(self, run: train_lib.Run, state) -> dict:
    dev = ensemble.evaluate(run.eval_fn, state, run.dev_set, run.config.train.batch_size)
    finite = _finite(dev['member_loss'])
    return {
      'dev_loss': float(finite.min()) if finite.size else float('nan'),
      'median_dev_loss': float(np.median(finite)) if finite.size else float('nan'),
      'ensemble_dev_loss': dev['ensemble_loss'],
      'member_dev_loss': dev['member_loss'].tolist(),
    }

  def start_info(self, state) -> dict:
    per_member = sum(x.size // x.shape[0] for x in jax.tree.leaves(state.params))
    return {'num_params': int(per_member), 'num_members': self.num_members}

  def log_line(self, metrics: dict) -> str:
    return (
      f'train loss median {metrics["train_loss"]:.6f}  dev loss best {metrics["dev_loss"]:.6f} '
      f'median {metrics["median_dev_loss"]:.6f}  ensemble {metrics["ensemble_dev_loss"]:.6f}'
    )

  def finish(self, run: train_lib.Run, state, mon: monitor.Monitor, wall: float, ckpts) -> dict:
    """The per-member table on the full train and dev sets: summary.json and printed."""
    cfg = run.config
    table = final_table(run, state, self.hparams)
    steps = int(sharding.host_copy(state.step).max())
    per_member = self.clock.steps_per_s()
    rate = None if per_member is None else per_member * self.num_members
    summary = {
      'task': cfg.data.task,
      'num_members': self.num_members,
      'data_mode': self.data_mode,
      **table,
      'dev_target_variance': train_lib.target_variance(run.dev_set),
      'steps': steps,
      'epochs': cfg.train.epochs,
      'train_wall_s': wall,
      'model_steps_per_s': rate,  # after the first (compiling) call, without evaluations
      'num_params_per_member': self.start_info(state)['num_params'],
      **train_lib.run_info(run, mon, ckpts),
    }
    train_lib.write_summary(run, mon, summary, skip=('history', 'members'))
    speed = f'{rate:.0f} model-steps/s after compiling' if rate else 'one call: speed not measured'
    mon.print(f'Members after {steps} steps ({speed}):')
    mon.print(format_table(table['members'], _varying_columns(self.hparams)))
    best = table['best_member']
    mon.print(
      f'Best member: {best["member"]} (learning_rate {best["learning_rate"]:.4g}, '
      f'dev loss {best["dev_loss"]:.6f}); ensemble mean prediction: dev loss '
      f'{table["ensemble_dev_loss"]:.6f}'
    )
    return summary
