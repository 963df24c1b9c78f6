"""`Program`: what the training loop runs, as plain data and functions; the single model's.

The loop (`bilstm_jax.training.loop`) depends on a `Program` alone. Two builders return
one: `single_model` here, and `bilstm_jax.ensembles.population.population` for a config
with an `ensemble` block (N stacked members). Neither knows the loop, and the loop knows
neither; both take the task, which alone knows what is learned, and share the rest:
a `RunShape` (seed, batch size, length and order of the run, built by the app) and the
`Schedule` it gives (the epoch plans, steps per epoch, total steps, the logged rate).
Every epoch trains on `Task.epoch_transform` of the training set, and `Task.host_metrics`
of the dev outputs join the dev metrics.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable

import jax
import numpy as np

from bilstm_jax.data import batching
from bilstm_jax.parallel import distributed, sharding
from bilstm_jax.training import export, optim, steps


@dataclasses.dataclass(frozen=True)
class Program:
  """A trainable run: the loop calls these, in order, and nothing else.

  Attributes:
    metrics: the names `train.metric` may take (keys of `evaluate`'s and
      `train_metrics`' results).
    metric_modes: {metric: 'min' or 'max'}: which direction is better.
    steps_per_epoch: optimiser steps per epoch (the same in every epoch).
    total_steps: optimiser steps in the whole run.
    batch_size: examples per step (for the examples/s figure).
    init: () -> (state, rng): a fresh state and dropout key, placed on the devices.
    epoch: epoch -> (this process's batches, (lo, hi) ranges of the compiled calls).
    train_chunk: (state, batches, rng) -> (state, loss sums on device).
    train_metrics: the window's host loss sums -> {'train_loss': ..., ...}.
    evaluate: state -> dev metrics {'dev_loss': ..., ...}.
    learning_rate: (state, step) -> the rate used at `step`, for the log.
    start_info: state -> fields of the 'start' event.
    log_line: metrics -> what an evaluation prints after its epoch and step.
    finish: (state, wall seconds) -> (summary fields, lines to print); also writes the
      run's outputs (export, plots) from the writing process.
    loss_labels: {metric: label} of the curves in plots/loss.png; None: train and dev loss.
  """

  metrics: tuple[str, ...]
  metric_modes: dict
  steps_per_epoch: int
  total_steps: int
  batch_size: int
  init: Callable
  epoch: Callable
  train_chunk: Callable
  train_metrics: Callable
  evaluate: Callable
  learning_rate: Callable
  start_info: Callable
  log_line: Callable
  finish: Callable
  loss_labels: dict | None = None


@dataclasses.dataclass(frozen=True)
class RunShape:
  """How a run walks its training data (the config's `seed`, `train`, `data.buckets` and
  `data.width_buckets`).

  Attributes:
    seed: parameters, dropout and shuffling.
    batch_size: examples per step.
    epochs: passes over the training data.
    num_steps: steps in all, instead of `epochs` when > 0.
    shuffle: each epoch in its own order, drawn from (seed, epoch); else in file order.
    steps_per_call: steps per compiled call (0: one epoch per call).
    num_buckets: length buckets (0: every batch at the data's full length).
    num_width_buckets: width buckets of the task's `width_keys` (0: the full width).
  """

  seed: int
  batch_size: int
  epochs: int
  num_steps: int = 0
  shuffle: bool = True
  steps_per_call: int = 0
  num_buckets: int = 0
  num_width_buckets: int = 0


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A run's epoch plans and what follows from them, for a single model and a population.

  Attributes:
    shape: the run's shape.
    optimizer: the optimiser's settings (its schedule needs `total_steps`).
    buckets: the length buckets of the training lengths, or None.
    steps_per_epoch: optimiser steps per epoch.
    total_steps: optimiser steps in the whole run.
    width_buckets: the width buckets of the training examples' widths, or None.
  """

  shape: RunShape
  optimizer: optim.OptimizerSpec
  buckets: batching.Buckets | None
  steps_per_epoch: int
  total_steps: int
  width_buckets: batching.Buckets | None = None

  @classmethod
  def build(
    cls,
    shape: RunShape,
    optimizer: optim.OptimizerSpec,
    train_set: dict,
    epoch_lengths=None,
    task=None,
  ) -> Schedule:
    """The schedule of a training set (its lengths make the buckets, and `task`'s
    `example_widths` of it the width buckets), with epochs of `epoch_lengths` (int[n];
    default the set's own; an ensemble member's set)."""
    lengths = train_set['lengths'] if epoch_lengths is None else epoch_lengths
    buckets = make_buckets(train_set, shape.num_buckets)
    widths = None
    if shape.num_width_buckets > 0:
      train_widths = task.example_widths(train_set)
      widths = batching.Buckets.from_lengths(train_widths, shape.num_width_buckets)
    per_epoch = len(_plan(shape, buckets, 1, lengths))
    total = shape.num_steps if shape.num_steps > 0 else shape.epochs * per_epoch
    return cls(shape, optimizer, buckets, per_epoch, total, widths)

  def plan(self, epoch: int, lengths, seed: int | None = None, widths=None) -> batching.EpochPlan:
    """Epoch `epoch`'s plan of `lengths` in the order of `seed` (default the run's); the
    calls' order always comes from the run's seed, so plans of one data share it. With
    width buckets, `widths` (int[n], `example_widths`) give each call its width."""
    return _plan(self.shape, self.buckets, epoch, lengths, seed, widths, self.width_buckets)

  def example_widths(self, task, dataset: dict):
    """`task.example_widths(dataset)` with width buckets, else None (nothing to fit)."""
    return None if self.width_buckets is None else task.example_widths(dataset)

  def bucket_info(self) -> dict:
    """The boundaries of the length and width buckets (None: none), for the 'start' event:
    a run compiles at most one training call per (length, width) pair."""
    return {
      'length_buckets': None if self.buckets is None else list(self.buckets.boundaries),
      'width_buckets': None if self.width_buckets is None else list(self.width_buckets.boundaries),
    }

  def make_optimizer(self, inject_weight_decay: bool = False):
    """`optim.make_optimizer` for this run's length."""
    return optim.make_optimizer(self.optimizer, self.total_steps, inject_weight_decay)

  def learning_rate(self, state, step: int) -> float | list:
    """The rate used at `step`, for the log: a float, or a list of the members' rates."""
    peak = sharding.host_copy(state.opt_state.hyperparams['learning_rate'])  # may span hosts
    return optim.learning_rate_at(self.optimizer, self.total_steps, peak, step)


def _plan(shape, buckets, epoch: int, lengths, seed=None, widths=None, width_buckets=None):
  return batching.epoch_plan(
    lengths,
    shape.batch_size,
    seed=shape.seed if seed is None else seed,
    epoch=epoch,
    shuffle=shape.shuffle,
    steps_per_call=shape.steps_per_call,
    buckets=buckets,
    call_seed=shape.seed,
    widths=widths,
    width_buckets=width_buckets,
  )


def make_buckets(train_set: dict, num_buckets: int) -> batching.Buckets | None:
  """Length buckets from the training lengths (`num_buckets` 0: none)."""
  if num_buckets <= 0:
    return None
  return batching.Buckets.from_lengths(train_set['lengths'], num_buckets)


def check_batch_size(shape: RunShape, mesh, examples: int, what: str) -> None:
  """Raises ValueError when a batch cannot be split over the mesh or exceeds `examples`."""
  sharding.check_batch_size(shape.batch_size, mesh)
  if shape.batch_size > examples:
    raise ValueError(
      f'train.batch_size={shape.batch_size} is larger than {what} ({examples} examples).'
    )


def evaluate_dataset(
  eval_fn, state, dataset: dict, batch_size: int, task, buckets=None, width_buckets=None
) -> dict:
  """The task's metrics over a whole dataset: {metric: sum / count}.

  The short last batch is padded with length-0 examples that weigh nothing.
  """
  total = None
  for batch in eval_batches(dataset, batch_size, task, buckets, width_buckets):
    total = steps.add_sums(total, eval_fn(state, batch))
  return steps.ratios(total)


def eval_batches(dataset: dict, batch_size: int, task, buckets=None, width_buckets=None):
  """Every example of `dataset` once (`batching.eval_plan`), each batch at its bucket's
  length (`buckets`) and width (`width_buckets`; None: full length or width)."""
  widths = None if width_buckets is None else task.example_widths(dataset)
  plan = batching.eval_plan(dataset['lengths'], batch_size, buckets, widths, width_buckets)
  return batching.plan_batches(dataset, plan, task.time_keys, task.width_keys)


def predict_dataset(
  predict_fn, state, dataset: dict, batch_size: int, task, axis: int = 0, width_buckets=None
):
  """The task's predictions for every example, in order: {name: array[n, ...]}.

  Batches run at the data's full length, so per-step predictions line up with the data,
  and at their width bucket's width (`width_buckets`, which change no output) or the full.
  `axis` is the example axis of `predict_fn`'s outputs (1 for an ensemble's members).
  """
  n = len(dataset['lengths'])
  batches = eval_batches(dataset, batch_size, task, None, width_buckets)
  outs = [jax.device_get(predict_fn(state, b)) for b in batches]
  return {
    k: np.take(np.concatenate([o[k] for o in outs], axis), np.arange(n), axis) for k in outs[0]
  }


def single_model(
  *, task, train_set: dict, dev_set: dict, mesh, workdir: str, optimizer, shape: RunShape
) -> Program:
  """The `Program` of one model of `task` (which must be `fit` to the training data).

  Args:
    task: the fitted task.
    train_set: the training dataset dict.
    dev_set: the dev dataset dict.
    mesh: the device mesh (`parallel.sharding.make_mesh`).
    workdir: where `finish` writes the export and plots.
    optimizer: the optimiser's settings (`training.optim.OptimizerSpec`).
    shape: the run's seed, batch size, length and order (`RunShape`).
  """
  check_batch_size(shape, mesh, len(train_set['lengths']), 'the training set')
  sched = Schedule.build(shape, optimizer, train_set, task=task)
  batch_size, seed = shape.batch_size, shape.seed
  model = task.make_model()
  tx = sched.make_optimizer()
  rows = sharding.local_rows(mesh, batch_size)
  # The jitted steps see global arrays: each batch split over the mesh's `data` axis (the
  # train step gets this process's rows, evaluation whole batches), the state as placed.
  multi_step = sharding.data_parallel(
    jax.jit(functools.partial(steps.train_steps, task=task), donate_argnums=0),
    mesh,
    batch_size,
    batch_axis=1,
  )
  eval_fn = sharding.data_parallel(
    jax.jit(functools.partial(steps.eval_step, task=task)), mesh, batch_size, global_rows=True
  )
  outputs_fn = jax.jit(
    lambda state, batch: {'outputs': steps.apply_model(state, state.params, batch, task)[0]}
  )

  def init():
    example = task.model_inputs(task.example_batch(batch_size, 1))

    def build(seed, inputs):  # the keys too, in the same single program
      init_rng, step_rng = jax.random.split(jax.random.key(seed))
      return steps.init_train_state(init_rng, model, tx, inputs), step_rng

    state, rng = jax.jit(build, compiler_options=steps.RUN_ONCE)(steps.key_seed(seed), example)
    # On the mesh: replicated (or split over `model`); a restored checkpoint keeps this.
    placement = (sharding.state_sharding(state, mesh), sharding.replicated(mesh))
    return sharding.put((state, rng), placement)

  def epoch(e):
    data = task.epoch_transform(train_set, seed, e)
    p = sched.plan(e, train_set['lengths'], widths=sched.example_widths(task, data))
    return sharding.process_batches(data, p, rows, task.time_keys, task.width_keys), p.chunks

  def evaluate(state, dataset):
    return evaluate_dataset(
      eval_fn, state, dataset, batch_size, task, sched.buckets, sched.width_buckets
    )

  def dev_metrics(state):
    dev = {f'dev_{k}': v for k, v in evaluate(state, dev_set).items()}
    host = dev_host_metrics(task, outputs_fn, state, dev_set, batch_size, sched.width_buckets)
    return {**dev, **{f'dev_{k}': v for k, v in host.items()}}

  finish = functools.partial(
    _finish_single,
    task=task,
    model=model,
    evaluate=evaluate,
    data=(train_set, dev_set),
    workdir=workdir,
    epochs=shape.epochs,
  )
  modes = {**task.metric_modes, **task.host_metric_modes}
  return Program(
    metrics=tuple(f'dev_{m}' for m in modes) + ('train_loss',),
    metric_modes={**{f'dev_{m}': mode for m, mode in modes.items()}, 'train_loss': 'min'},
    steps_per_epoch=sched.steps_per_epoch,
    total_steps=sched.total_steps,
    batch_size=batch_size,
    init=init,
    epoch=epoch,
    train_chunk=lambda state, batches, rng: multi_step(state, batching.stack(batches), rng),
    train_metrics=lambda window: {
      'train_loss': float(window['loss_sum']) / max(float(window['weight']), 1.0)
    },
    evaluate=dev_metrics,
    learning_rate=sched.learning_rate,
    start_info=lambda state: {'num_params': _num_params(state), **sched.bucket_info()},
    log_line=lambda m: '  '.join(
      [f'train loss {m["train_loss"]:.6f}']
      + [f'dev {k} {m[f"dev_{k}"]:.6f}' for k in (*task.metrics, *task.host_metric_modes)]
    ),
    finish=finish,
  )


def dev_host_metrics(
  task, outputs_fn, state, dev_set: dict, batch_size: int, width_buckets=None
) -> dict:
  """`task.host_metrics` of the dev set ({} when the task has none), from `outputs_fn`:
  (state, batch) -> {'outputs': [batch, ...]}, the model's (or the combined) output."""
  if not task.host_metric_modes:
    return {}
  outputs = predict_dataset(outputs_fn, state, dev_set, batch_size, task, 0, width_buckets)
  outputs = outputs['outputs']
  return task.host_metrics(dev_set, outputs)


def _num_params(state) -> int:
  return int(sum(x.size for x in jax.tree.leaves(state.params)))


def _finish_single(state, wall, *, task, model, evaluate, data, workdir, epochs):
  """`Program.finish` of one model: final metrics, the export and the task's report."""
  train_set, dev_set = data
  train = evaluate(state, train_set)
  dev = evaluate(state, dev_set)
  n = int(state.step)
  summary = {
    'task': task.name,
    **{f'final_train_{k}': v for k, v in train.items()},
    **{f'final_dev_{k}': v for k, v in dev.items()},
    'steps': n,
    'epochs': epochs,
    'train_wall_s': wall,
    'steps_per_s': n / wall if wall > 0 else None,
    'num_params': _num_params(state),
  }
  lines = []
  # On every process: parameters split over the `model` axis of several processes are
  # gathered from all of them (a collective), before process 0 alone writes outputs.
  host_state = state.replace(
    params=sharding.host_copy(state.params), model_state=sharding.host_copy(state.model_state)
  )
  writer = distributed.is_writer()
  if writer:
    export.export_predict(
      model,
      {'params': host_state.params, **host_state.model_state},
      task,
      os.path.join(workdir, 'export'),
    )
  predict_fn = jax.jit(functools.partial(steps.predict_step, task=task))

  def predict(dataset):
    head = {k: v[:4] for k, v in dataset.items()}
    return predict_dataset(predict_fn, host_state, head, 4, task)

  plots = os.path.join(workdir, 'plots') if writer else None
  extra = task.report(predict, dev_set, dev, lines.append, plots)
  summary.update(extra)
  lines.append(task.final_line(train, dev, extra))
  return summary, lines
