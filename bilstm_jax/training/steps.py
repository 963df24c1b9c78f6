"""The train state and the pure, jittable steps: one update, several, and evaluation.

Every function takes the task (`bilstm_jax.tasks.base.Task`) that says how a batch
feeds the model (`model_inputs`) and what it minimises (`loss`) or measures
(`eval_sums`); nothing here knows a task.
"""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
from flax.training import train_state


class TrainState(train_state.TrainState):
  """Flax's TrainState (step, apply_fn, params, tx, opt_state) plus `model_state`.

  Attributes:
    model_state: the model's variable collections other than params (e.g. batch-norm
      statistics), updated by every training step; empty for most models.
  """

  model_state: dict = flax.struct.field(default_factory=dict)


# Compiler options for programs that run once, such as building the initial state: no LLVM
# optimisations (measurements in benchmarks/NOTES.md). The values can differ from an
# optimised build's in the last bit (where LLVM would contract a multiply-add).
RUN_ONCE = {'xla_backend_optimization_level': 0}

# The variable collection of a model's `perturb` points (Flax's default).
PERTURBATIONS = 'perturbations'


def key_seed(seed: int) -> np.uint32:
  """`seed` as the 32 bits `jax.random.key(seed)` uses, to pass into a jitted program.

  A Python int argument of a jitted function becomes int32 and overflows at 2**31, while
  `jax.random.key` of a Python int keeps its low 32 bits (checked for -5 .. 2**33).
  """
  return np.uint32(seed & 0xFFFFFFFF)


def init_train_state(rng: jax.Array, model, tx, inputs: tuple) -> TrainState:
  """Traceable: variables initialised from the model inputs' shapes, wrapped with `tx`."""
  variables = dict(model.init(rng, *inputs))
  params = variables.pop('params')
  variables.pop(PERTURBATIONS, None)  # shaped like one batch: made afresh by each step
  return TrainState.create(apply_fn=model.apply, params=params, tx=tx, model_state=variables)


def create_train_state(
  rng: jax.Array, model, tx, inputs: tuple, compiler_options: dict | None = None
) -> TrainState:
  """Initialises parameters from example model inputs and wraps them with `tx`.

  One jitted program for the parameters and the optimiser state: run eagerly, every
  initialiser and every optimiser buffer would compile a program of its own.

  Args:
    rng: the initialisation key.
    model: the Flax module.
    tx: the optax transformation.
    inputs: the model's positional inputs (e.g. `task.model_inputs(example_batch)`).
    compiler_options: for that program, e.g. `RUN_ONCE` (as the training loop uses).
      JAX takes them only on a top-level jit, so the default is none: the function then
      also works inside a caller's `jax.jit`.
  """
  init = jax.jit(
    functools.partial(init_train_state, model=model, tx=tx), compiler_options=compiler_options
  )
  return init(rng, inputs=tuple(inputs))


def apply_model(state: TrainState, params, batch: dict, task, rng=None, perturbations=None):
  """The model's outputs on a batch, and its updated `model_state`.

  With `rng` (training): dropout on, drawing from `rng`, and mutable collections updated.
  Without (evaluation): deterministic, `model_state` unchanged.
  perturbations: values added at the model's `perturb` points ({name: array}).
  """
  variables = {'params': params, **state.model_state}
  if perturbations is not None:
    variables[PERTURBATIONS] = perturbations
  inputs = task.model_inputs(batch)
  if rng is None:
    return state.apply_fn(variables, *inputs), state.model_state
  kwargs = {'deterministic': False, 'rngs': {'dropout': rng}}
  if state.model_state:
    outputs, updates = state.apply_fn(variables, *inputs, mutable=list(state.model_state), **kwargs)
    return outputs, dict(updates)
  return state.apply_fn(variables, *inputs, **kwargs), state.model_state


def train_step(state: TrainState, batch: dict, rng: jax.Array, task) -> tuple[TrainState, dict]:
  """One optimiser step on the task's mean loss over the batch.

  Args:
    state: the current TrainState.
    batch: a dict of arrays (the task's inputs, lengths and what it learns from).
    rng: a base key; folded with `state.step` so dropout differs every step.
    task: supplies `model_inputs(batch)` and `loss(outputs, batch) -> (sum, weight)`;
      an `adversarial` size > 0 adds adversarial training: the gradient is that of the
      loss plus the loss under `adversarial_perturbation` at the model's `perturb` points
      (twice the compute).

  Returns:
    (new state, {'loss': mean loss, 'loss_sum': sum, 'weight': weight}), the clean loss.
  """
  rng = jax.random.fold_in(rng, state.step)

  def objective(params, perturbations=None):
    outputs, model_state = apply_model(state, params, batch, task, rng, perturbations)
    total, weight = task.loss(outputs, batch)
    return total / jnp.maximum(weight, 1.0), (total, weight, model_state)

  size = getattr(task, 'adversarial', 0.0)
  if size > 0:
    zeros = perturbation_zeros(state, batch, task)
    grad_fn = jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)
    (loss, (total, weight, model_state)), (grads, toward) = grad_fn(state.params, zeros)
    attack = adversarial_perturbation(toward, size)
    adv_grads = jax.grad(lambda p: objective(p, attack)[0])(state.params)
    grads = jax.tree.map(jnp.add, grads, adv_grads)
  else:
    (loss, (total, weight, model_state)), grads = jax.value_and_grad(objective, has_aux=True)(
      state.params
    )
  state = state.apply_gradients(grads=grads).replace(model_state=model_state)
  return state, {'loss': loss, 'loss_sum': total, 'weight': weight}


def perturbation_zeros(state: TrainState, batch: dict, task) -> dict:
  """Zeros shaped like the values at the model's `perturb` points on `batch`."""

  def marked(params):
    variables = {'params': params, **state.model_state}
    _, made = state.apply_fn(variables, *task.model_inputs(batch), mutable=[PERTURBATIONS])
    return made.get(PERTURBATIONS, {})

  shapes = jax.eval_shape(marked, state.params)
  if not shapes:
    raise ValueError(
      f'adversarial={task.adversarial}: the model marks no perturbation point (only the '
      'text models mark their embeddings).'
    )
  return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def adversarial_perturbation(grads: dict, size: float) -> dict:
  """Each example's loss gradient at the perturbation points, scaled to L2 norm `size`.

  The adversarial perturbation of Miyato et al. (2017): the first-order direction that
  raises the loss most, per example (axis 0) over all its other axes. The gradient is
  first divided by its largest magnitude, since a batch-mean loss makes it tiny.
  """

  def one(g):
    axes = tuple(range(1, g.ndim))
    g = g / (jnp.max(jnp.abs(g), axis=axes, keepdims=True) + 1e-12)
    norm = jnp.sqrt(jnp.sum(jnp.square(g), axis=axes, keepdims=True))
    return jax.lax.stop_gradient(size * g / (norm + 1e-12))

  return jax.tree.map(one, grads)


def train_steps(state: TrainState, batches: dict, rng: jax.Array, task) -> tuple[TrainState, dict]:
  """Several `train_step`s in one compiled call: `batches` has a leading step axis.

  Returns the final state and the loss sums over the steps ('loss_sum', 'weight').
  """

  def body(state, batch):
    return train_step(state, batch, rng, task)

  state, metrics = jax.lax.scan(body, state, batches)
  return state, {'loss_sum': metrics['loss_sum'].sum(), 'weight': metrics['weight'].sum()}


def eval_step(state: TrainState, batch: dict, task) -> dict:
  """The task's metric sums on a batch without dropout: {metric: (sum, count)}."""
  outputs, _ = apply_model(state, state.params, batch, task)
  return task.eval_sums(outputs, batch)


def predict_step(state: TrainState, batch: dict, task) -> dict:
  """The task's predictions on a batch (deterministic): {name: array[batch, ...]}."""
  outputs, _ = apply_model(state, state.params, batch, task)
  return task.predictions(outputs, batch)


def add_sums(total: dict | None, sums: dict) -> dict:
  """Adds {metric: (sum, count)} dicts on the host, in float64."""
  sums = {k: (float(s), float(c)) for k, (s, c) in sums.items()}
  if total is None:
    return sums
  return {k: (total[k][0] + s, total[k][1] + c) for k, (s, c) in sums.items()}


def ratios(total: dict) -> dict:
  """{metric: sum / count} (count 0 gives 0)."""
  return {k: s / max(c, 1.0) for k, (s, c) in total.items()}
