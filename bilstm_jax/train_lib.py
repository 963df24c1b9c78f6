"""Training: state, a pure jitted step, evaluation and the loop behind `train.py`."""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax.training import train_state

from bilstm_jax import data as data_lib
from bilstm_jax import losses, tasks


class TrainState(train_state.TrainState):
  """Flax's TrainState: step, apply_fn, params, tx, opt_state."""


def make_optimizer(optim_config) -> optax.GradientTransformation:
  """Adam with an injectable learning rate (ensembles set it per member)."""
  if optim_config.name != 'adam':
    raise ValueError(f"Unknown optimizer {optim_config.name!r}; known: ['adam'].")
  return optax.inject_hyperparams(optax.adam)(learning_rate=optim_config.learning_rate)


def create_train_state(rng: jax.Array, model, tx, sample_batch: dict) -> TrainState:
  """Initialises parameters from a sample batch's shapes and wraps them with `tx`."""
  variables = model.init(
    rng, jnp.asarray(sample_batch['inputs']), jnp.asarray(sample_batch['lengths'])
  )
  return TrainState.create(apply_fn=model.apply, params=variables['params'], tx=tx)


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


class MetricsLog:
  """Appends one JSON object per event to `workdir/metrics.jsonl`."""

  def __init__(self, workdir: str):
    self.path = os.path.join(workdir, 'metrics.jsonl')

  def write(self, event: str, **values) -> None:
    with open(self.path, 'a') as f:
      f.write(json.dumps({'event': event, **values}) + '\n')


def write_json(path: str, obj) -> None:
  """Writes JSON atomically (temporary file, then rename)."""
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(obj, f, indent=2, sort_keys=True)
  os.replace(tmp, path)


def _steps_chunks(num_steps: int, steps_per_call: int) -> list[tuple[int, int]]:
  size = num_steps if steps_per_call <= 0 else steps_per_call
  return [(s, min(s + size, num_steps)) for s in range(0, num_steps, size)]


def train_and_evaluate(config, workdir: str) -> dict:
  """Trains the model a config describes, logs to `workdir`, returns the summary dict."""
  os.makedirs(workdir, exist_ok=True)
  task = tasks.get_task(config.data.task)
  train_set = task.load(config.data, 'train')
  dev_set = task.load(config.data, 'dev')
  data_lib.check_batch(train_set, config.data.input_size)
  data_lib.check_batch(dev_set, config.data.input_size)
  batch_size = config.train.batch_size
  if batch_size > len(train_set['lengths']):
    raise ValueError(
      f'train.batch_size={batch_size} is larger than the training set '
      f'({len(train_set["lengths"])} examples).'
    )
  steps_per_epoch = data_lib.num_batches(len(train_set['lengths']), batch_size, True)

  model = task.make_model(config.model, config.data)
  rng = jax.random.key(config.seed)
  init_rng, step_rng = jax.random.split(rng)
  sample = next(data_lib.batches(train_set, batch_size, shuffle=False))
  state = create_train_state(init_rng, model, make_optimizer(config.optim), sample)
  write_json(os.path.join(workdir, 'config.json'), config.to_dict())
  log = MetricsLog(workdir)
  num_params = sum(x.size for x in jax.tree.leaves(state.params))
  log.write('start', num_params=int(num_params), steps_per_epoch=steps_per_epoch)

  multi_step = jax.jit(functools.partial(train_steps, loss_fn=task.loss_fn), donate_argnums=0)
  eval_fn = jax.jit(functools.partial(eval_step, loss_fn=task.loss_fn))
  chunks = _steps_chunks(steps_per_epoch, config.train.steps_per_call)

  start = time.perf_counter()
  window = {'loss_sum': 0.0, 'weight': 0.0}
  history = []
  for epoch in range(1, config.train.epochs + 1):
    epoch_batches = list(
      data_lib.batches(
        train_set, batch_size, seed=config.seed, epoch=epoch, shuffle=config.train.shuffle
      )
    )
    for lo, hi in chunks:
      state, sums = multi_step(state, data_lib.stack(epoch_batches[lo:hi]), step_rng)
      window = jax.tree.map(jnp.add, window, sums)  # stays on device until logged
    if epoch % config.train.log_every_epochs == 0 or epoch == config.train.epochs:
      train_loss = float(window['loss_sum']) / max(float(window['weight']), 1.0)
      dev_loss = evaluate(eval_fn, state, dev_set, batch_size)
      window = {'loss_sum': 0.0, 'weight': 0.0}
      row = {
        'epoch': epoch,
        'step': int(state.step),
        'train_loss': train_loss,
        'dev_loss': dev_loss,
      }
      history.append(row)
      log.write('eval', **row)
      losses_msg = f'train loss {train_loss:.6f}  dev loss {dev_loss:.6f}'
      print(f'Epoch {epoch:4d}  step {int(state.step):6d}  {losses_msg}')
  jax.block_until_ready(state.params)
  wall = time.perf_counter() - start

  train_mse = evaluate(eval_fn, state, train_set, batch_size)
  dev_mse = evaluate(eval_fn, state, dev_set, batch_size)
  dev_var = target_variance(dev_set)
  summary = {
    'task': config.data.task,
    'final_train_loss': train_mse,
    'final_dev_loss': dev_mse,
    'dev_target_variance': dev_var,
    'dev_loss_over_variance': dev_mse / dev_var,
    'steps': int(state.step),
    'epochs': config.train.epochs,
    'train_wall_s': wall,
    'steps_per_s': int(state.step) / wall,
    'num_params': int(num_params),
    'history': history,
  }
  write_json(os.path.join(workdir, 'summary.json'), summary)
  log.write('end', **{k: v for k, v in summary.items() if k != 'history'})
  print(
    f'Final MSE: train {train_mse:.6f}  dev {dev_mse:.6f}  '
    f'(dev target variance {dev_var:.4f}; ratio {dev_mse / dev_var:.4f})'
  )
  _print_predictions(state, dev_set)
  return summary


def _print_predictions(state: TrainState, dataset: dict, num_seqs: int = 2, num_steps: int = 5):
  preds = state.apply_fn(
    {'params': state.params},
    jnp.asarray(dataset['inputs'][:num_seqs]),
    jnp.asarray(dataset['lengths'][:num_seqs]),
  )
  preds = np.asarray(preds)
  print('Predictions vs targets (dev, first output unit):')
  for s in range(num_seqs):
    steps = min(num_steps, int(dataset['lengths'][s]))
    pairs = '  '.join(
      f'{preds[s, t, 0]:+.3f}/{dataset["targets"][s, t, 0]:+.3f}' for t in range(steps)
    )
    print(f'  seq {s}: {pairs}')
