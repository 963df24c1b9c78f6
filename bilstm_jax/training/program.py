"""`Program`: what the training loop runs, as plain data and functions; the single model's.

The loop (`bilstm_jax.training.loop`) depends on a `Program` alone. Two builders return
one: `single_model` here, and `bilstm_jax.ensembles.population.population` for a config
with an `ensemble` block (N stacked members). Neither knows the loop, and the loop knows
neither; both take the task, which alone knows what is learned.
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


def make_buckets(train_set: dict, num_buckets: int) -> batching.Buckets | None:
  """Length buckets from the training lengths (`num_buckets` 0: none)."""
  if num_buckets <= 0:
    return None
  return batching.Buckets.from_lengths(train_set['lengths'], num_buckets)


def evaluate_dataset(eval_fn, state, dataset: dict, batch_size: int, task, buckets=None) -> dict:
  """The task's metrics over a whole dataset: {metric: sum / count}.

  The short last batch is padded with length-0 examples that weigh nothing.
  """
  plan = batching.eval_plan(dataset['lengths'], batch_size, buckets)
  total = None
  for batch in batching.plan_batches(dataset, plan, task.time_keys):
    total = steps.add_sums(total, eval_fn(state, batch))
  return steps.ratios(total)


def predict_dataset(predict_fn, state, dataset: dict, batch_size: int, task, axis: int = 0):
  """The task's predictions for every example, in order: {name: array[n, ...]}.

  Batches run at the data's full length, so per-step predictions line up with the data.
  `axis` is the example axis of `predict_fn`'s outputs (1 for an ensemble's members).
  """
  n = len(dataset['lengths'])
  outs = [
    jax.device_get(predict_fn(state, b))
    for b in batching.batches(dataset, batch_size, shuffle=False, drop_remainder=False)
  ]
  return {
    k: np.take(np.concatenate([o[k] for o in outs], axis), np.arange(n), axis) for k in outs[0]
  }


def single_model(
  *,
  task,
  train_set: dict,
  dev_set: dict,
  mesh,
  workdir: str,
  optim_config,
  seed: int,
  batch_size: int,
  epochs: int,
  num_steps: int,
  shuffle: bool,
  steps_per_call: int,
  num_buckets: int = 0,
) -> Program:
  """The `Program` of one model of `task` (which must be `fit` to the training data).

  Args:
    task: the fitted task.
    train_set: the training dataset dict.
    dev_set: the dev dataset dict.
    mesh: the device mesh (`parallel.sharding.make_mesh`).
    workdir: where `finish` writes the export and plots.
    optim_config: the config's `optim` block (`training.optim.make_optimizer`).
    seed: parameters, dropout and shuffling.
    batch_size: examples per step, as in the config's `train` block.
    epochs: passes over the training data.
    num_steps: steps in all, instead of `epochs` when > 0.
    shuffle: each epoch in its own order, drawn from (seed, epoch); else in file order.
    steps_per_call: steps per compiled call (0: one epoch per call).
    num_buckets: length buckets (0: every batch at the data's full length).
  """
  model = task.make_model()
  buckets = make_buckets(train_set, num_buckets)
  sharding.check_batch_size(batch_size, mesh)
  if batch_size > len(train_set['lengths']):
    raise ValueError(
      f'train.batch_size={batch_size} is larger than the training set '
      f'({len(train_set["lengths"])} examples).'
    )
  rows = sharding.local_rows(mesh, batch_size)

  def plan(epoch):
    return batching.epoch_plan(
      train_set['lengths'],
      batch_size,
      seed=seed,
      epoch=epoch,
      shuffle=shuffle,
      steps_per_call=steps_per_call,
      buckets=buckets,
    )

  steps_per_epoch = len(plan(1))
  total_steps = num_steps if num_steps > 0 else epochs * steps_per_epoch
  tx = optim.make_optimizer(optim_config, total_steps)
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
  predict_fn = jax.jit(functools.partial(steps.predict_step, task=task))
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
    p = plan(e)
    data = task.epoch_transform(train_set, seed, e)
    return sharding.process_batches(data, p, rows, task.time_keys), p.chunks

  def train_chunk(state, batches, rng):
    return multi_step(state, batching.stack(batches), rng)

  def evaluate(state, dataset=None):
    dataset = dev_set if dataset is None else dataset
    return evaluate_dataset(eval_fn, state, dataset, batch_size, task, buckets)

  def dev_metrics(state):
    dev = {f'dev_{k}': v for k, v in evaluate(state).items()}
    if task.host_metric_modes:
      outputs = predict_dataset(outputs_fn, state, dev_set, batch_size, task)['outputs']
      dev.update({f'dev_{k}': v for k, v in task.host_metrics(dev_set, outputs).items()})
    return dev

  def num_params(state):
    return int(sum(x.size for x in jax.tree.leaves(state.params)))

  def finish(state, wall):
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
      'num_params': num_params(state),
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

    def predict(dataset):
      head = {k: v[:4] for k, v in dataset.items()}
      return predict_dataset(predict_fn, host_state, head, 4, task)

    plots = os.path.join(workdir, 'plots') if writer else None
    extra = task.report(predict, dev_set, dev, lines.append, plots)
    summary.update(extra)
    lines.append(task.final_line(train, dev, extra))
    return summary, lines

  return Program(
    metrics=tuple(f'dev_{m}' for m in (*task.metrics, *task.host_metric_modes)) + ('train_loss',),
    metric_modes={
      **{f'dev_{m}': mode for m, mode in {**task.metric_modes, **task.host_metric_modes}.items()},
      'train_loss': 'min',
    },
    steps_per_epoch=steps_per_epoch,
    total_steps=total_steps,
    batch_size=batch_size,
    init=init,
    epoch=epoch,
    train_chunk=train_chunk,
    train_metrics=lambda window: {
      'train_loss': float(window['loss_sum']) / max(float(window['weight']), 1.0)
    },
    evaluate=dev_metrics,
    learning_rate=lambda state, step: optim.learning_rate_at(
      optim_config,
      total_steps,
      sharding.host_copy(state.opt_state.hyperparams['learning_rate']),  # may span processes
      step,
    ),
    start_info=lambda state: {'num_params': num_params(state)},
    log_line=lambda m: '  '.join(
      [f'train loss {m["train_loss"]:.6f}'] + [f'dev {k} {m[f"dev_{k}"]:.6f}' for k in task.metrics]
    ),
    finish=finish,
  )
