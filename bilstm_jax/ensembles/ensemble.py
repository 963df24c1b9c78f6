"""Ensembles and populations: N models in one compiled program, with a leading member axis.

Every function here is a transform over the single-model ones in `training.steps`: the
members' `TrainState`s are stacked on a new leading axis (`jax.vmap` of
`init_train_state`), and one training call is `jax.vmap` of `steps.train_steps` (a
`lax.scan` of `train_step`). The task (`bilstm_jax.tasks`) says what is minimised and
measured, and how members' outputs combine (`Task.combine`).
There is no second implementation of the step, so member i of an ensemble follows exactly
the trajectory of a single-model run with the same key, hyperparameters and batches.

Per-member hyperparameters, all traced values (so any mix of them shares one program):
  learning_rate, weight_decay: entries of `opt_state.hyperparams` (`optax.inject_hyperparams`).
  init_scale: multiplies the member's initial parameters.
  dropout: the rate of every `nn.Dropout` in the model, substituted at call time through
    `flax.linen.intercept_methods` (`dropout_apply_fn`); the model is built with a nonzero
    static rate only so that its dropout layers exist.
Structural hyperparameters (hidden size, layers) change shapes and cannot share a program:
`bilstm_jax.ensembles.sweep` compiles one population per shape. Training a population
from a config (`train.py` with an `ensemble` block) goes through the training loop, like a
single model; `bilstm_jax.ensembles.population` builds its `Program` from the functions
here.

Member keys: member i uses `jax.random.key(seed + i)`, split into (init key, step key) the
way a single model's run splits its key, so its initialisation and dropout are
those of a single run with `config.seed = seed + i`.

Data modes (`member_data`):
  shared:    every member trains on the same batches (seeds, deep ensembles, lr sweeps).
  shuffled:  every member trains on every example, in its own order (as separate runs of
             seeds seed + i would); with length buckets, the members' calls share their
             bucket order, so one compiled shape serves all of them at each step.
  bootstrap: member i trains on n examples drawn with replacement (bagging).
  subsets:   member i trains on its own disjoint n // N examples.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.data import batching as data_lib
from bilstm_jax.parallel import sharding
from bilstm_jax.training import steps

DATA_MODES = ('shared', 'shuffled', 'bootstrap', 'subsets')
# The modes whose members all see every example, so length buckets give each step one shape.
BUCKETED_MODES = ('shared', 'shuffled')


# ----------------------------------------------------------------------------- creation


def member_keys(
  seed: int, num_members: int, compiler_options: dict | None = None
) -> tuple[jax.Array, jax.Array]:
  """(init keys, step keys), each key[num_members]: member i splits `key(seed + i)`.

  One jitted program for all members (eagerly, each member's split and each index was
  one); `compiler_options` as for `steps.create_train_state`.
  """
  seeds = np.array([steps.key_seed(seed + i) for i in range(num_members)])

  def split(seeds):
    keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(seeds)
    return keys[:, 0], keys[:, 1]

  return jax.jit(split, compiler_options=compiler_options)(seeds)


def set_hparams(state: steps.TrainState, **values) -> steps.TrainState:
  """Writes optimiser hyperparameters (e.g. learning_rate=float32[N]) into `opt_state`.

  Works for one state (scalars) and for stacked members (arrays with a leading member axis).
  """
  hp = dict(state.opt_state.hyperparams)
  for name, value in values.items():
    if name not in hp:
      raise ValueError(f'The optimiser has no injectable {name!r}; it has {sorted(hp)}.')
    hp[name] = jnp.broadcast_to(jnp.asarray(value, hp[name].dtype), hp[name].shape)
  return state.replace(opt_state=state.opt_state._replace(hyperparams=hp))


def scale_params(state: steps.TrainState, scale) -> steps.TrainState:
  """Multiplies every parameter by `scale` (a scalar, or float32[N] for stacked members)."""
  scale = jnp.asarray(scale, jnp.float32)

  def mul(p):
    return (p * scale.reshape(scale.shape + (1,) * (p.ndim - scale.ndim))).astype(p.dtype)

  return state.replace(params=jax.tree.map(mul, state.params))


def create_members(
  init_keys: jax.Array,
  model: nn.Module,
  tx,
  inputs: tuple,
  hparams: dict | None = None,
  compiler_options: dict | None = None,
) -> steps.TrainState:
  """N members as one `TrainState` whose leaves have a leading member axis.

  Args:
    init_keys: key[N], one initialisation key per member.
    model: the Flax module, as for `steps.create_train_state`.
    tx: the optax transformation, as for `steps.create_train_state`.
    inputs: the model's example positional inputs, as for `steps.create_train_state`.
    hparams: optional {'learning_rate', 'weight_decay', 'init_scale': float32[N]}; the
      first two go into `opt_state.hyperparams`, `init_scale` multiplies the initial
      parameters. ('dropout' is not part of the state; pass it to the step.)
    compiler_options: as for `steps.create_train_state`.

  Returns:
    The stacked TrainState (apply_fn and tx are shared).
  """
  hparams = {k: v for k, v in (hparams or {}).items() if k != 'dropout'}

  def create(keys, inputs, hparams):
    state = jax.vmap(lambda k: steps.init_train_state(k, model, tx, inputs))(keys)
    if 'init_scale' in hparams:
      state = scale_params(state, hparams.pop('init_scale'))
    return set_hparams(state, **hparams)

  # One program (see steps.create_train_state); eagerly, scaling and writing the
  # hyperparameters compiled one program per parameter and per value.
  create = jax.jit(create, compiler_options=compiler_options)
  return create(init_keys, tuple(inputs), hparams)


def get_member(state: steps.TrainState, i: int) -> steps.TrainState:
  """Member i as an ordinary single-model TrainState (no member axis)."""
  return jax.tree.map(lambda x: x[i], state)


def export_params(state: steps.TrainState, i: int) -> dict:
  """Member i's parameters as a host numpy tree: usable with `model.apply` like any params.

  With members split over several processes every process must call it (`host_copy`)."""
  return sharding.host_copy(jax.tree.map(lambda x: x[i], state.params))


def shard_members(tree, mesh: jax.sharding.Mesh | None = None, axis: str = 'member'):
  """Places the leading (member) axis of every leaf across devices.

  With `mesh=None`, a one-dimensional mesh over all devices; any mesh with a `member` axis
  works (e.g. `sharding.make_mesh`, whose `sharding.member_sharding` also splits weights
  over a `model` axis). The number of members must be
  a multiple of the mesh axis size. The jitted ensemble step then runs each device's
  members locally (shared batches are replicated; per-member batches can be sharded too).
  """
  if mesh is None:
    # Auto axes: XLA propagates the placement through vmap and scan by itself.
    mesh = jax.make_mesh((jax.device_count(),), (axis,), axis_types=(jax.sharding.AxisType.Auto,))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(axis))
  return jax.device_put(tree, sharding)


# ------------------------------------------------------------------------------ dropout


def _dropout_interceptor(rate: jax.Array):
  """Replaces the static rate of every `nn.Dropout` call with the traced `rate`.

  Reproduces `nn.Dropout.__call__` (same rng stream, mask and scaling), so a member with
  rate r matches a model built with `dropout=r`.
  """

  def interceptor(next_fun, args, kwargs, context):
    module = context.module
    if not (isinstance(module, nn.Dropout) and context.method_name == '__call__'):
      return next_fun(*args, **kwargs)
    inputs = args[0]
    deterministic = nn.merge_param(
      'deterministic', module.deterministic, kwargs.get('deterministic', None)
    )
    if deterministic:
      return inputs
    keep = 1.0 - jnp.asarray(rate, jnp.float32)
    rng = kwargs.get('rng')
    if rng is None:
      rng = module.make_rng(module.rng_collection)
    shape = list(inputs.shape)
    for dim in module.broadcast_dims:
      shape[dim] = 1
    mask = jnp.broadcast_to(jax.random.bernoulli(rng, p=keep, shape=shape), inputs.shape)
    # keep == 0 (rate 1) gives zeros, as in Flax.
    scaled = inputs / jnp.maximum(keep, jnp.finfo(jnp.float32).tiny).astype(inputs.dtype)
    return jax.lax.select(mask, scaled, jnp.zeros_like(inputs))

  return interceptor


def dropout_apply_fn(apply_fn: Callable, rate: jax.Array) -> Callable:
  """`apply_fn` with every dropout layer using `rate` (a traced scalar) instead of its own."""

  def apply(*args, **kwargs):
    with nn.intercept_methods(_dropout_interceptor(rate)):
      return apply_fn(*args, **kwargs)

  return apply


# -------------------------------------------------------------------------------- steps


def _member_train_steps(state, batches, rng, dropout, task):
  """One member's `steps.train_steps`, with its dropout rate swapped in if given."""
  if dropout is None:
    return steps.train_steps(state, batches, rng, task)
  apply_fn = state.apply_fn
  state = state.replace(apply_fn=dropout_apply_fn(apply_fn, dropout))
  state, sums = steps.train_steps(state, batches, rng, task)
  return state.replace(apply_fn=apply_fn), sums  # no tracer may leave in static fields


def make_train_steps(
  task,
  shared_data: bool = True,
  per_member_dropout: bool = False,
  donate: bool = True,
) -> Callable:
  """The jitted ensemble step: `jax.vmap` of `steps.train_steps` over members.

  Args:
    task: what the members learn (`loss`, `model_inputs`).
    shared_data: every member trains on the same batches.
    per_member_dropout: substitute each member's dropout rate (see `dropout_apply_fn`).
    donate: donate the state's buffers to the call.

  Returns:
    fn(state, batches, step_keys, dropout) -> (state, {'loss_sum', 'weight': float32[N]}),
    where state is stacked over N members, batches is {'inputs': [S, B, T, F], ...} when
    `shared_data` else [N, S, B, T, F] (S steps per call), step_keys is key[N] and dropout
    is float32[N] (ignored, may be None, unless `per_member_dropout`).
  """
  batch_axis = None if shared_data else 0

  def fn(state, batches, step_keys, dropout):
    if not per_member_dropout:
      member = functools.partial(_member_train_steps, dropout=None, task=task)
      return jax.vmap(member, in_axes=(0, batch_axis, 0))(state, batches, step_keys)
    member = functools.partial(_member_train_steps, task=task)
    return jax.vmap(member, in_axes=(0, batch_axis, 0, 0))(state, batches, step_keys, dropout)

  return jax.jit(fn, donate_argnums=0 if donate else ())


# ---------------------------------------------------------------------------- inference


def predict(state: steps.TrainState, batch: dict, task) -> jax.Array:
  """Every member's deterministic model outputs on a batch: array[N, batch, ...]."""

  def member(params, model_state):
    variables = {'params': params, **model_state}
    return state.apply_fn(variables, *task.model_inputs(batch))

  return jax.vmap(member)(state.params, state.model_state)


def mean_and_spread(preds: jax.Array) -> dict:
  """{'mean', 'std'} over the member axis of float[N, ...] predictions."""
  return {'mean': preds.mean(0), 'std': preds.std(0)}


def probability_summary(logits: jax.Array) -> dict:
  """Members' class probabilities from logits float[N, ..., classes], and their mean.

  Returns:
    {'member_probs': [N, ..., C], 'mean_probs': [..., C] (the ensemble's prediction),
    'std_probs': [..., C], 'entropy': [...] (of the mean probabilities, in nats)}.
  """
  probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
  mean = probs.mean(0)
  entropy = -(mean * jnp.log(jnp.clip(mean, 1e-12))).sum(-1)
  return {'member_probs': probs, 'mean_probs': mean, 'std_probs': probs.std(0), 'entropy': entropy}


def _eval_sums(state, batch, task):
  outputs = predict(state, batch, task)
  member = jax.vmap(lambda o: task.eval_sums(o, batch))(outputs)
  return {'member': member, 'ensemble': task.eval_sums(task.combine(outputs), batch)}


def make_eval_fn(task) -> Callable:
  """Jitted (state, batch) -> {'member': {metric: (sum[N], count[N])}, 'ensemble': {metric:
  (sum, count)}}: each member's metric sums and those of the combined output."""
  return jax.jit(functools.partial(_eval_sums, task=task))


def member_predictions(state, batch: dict, task) -> tuple[dict, dict]:
  """The task's predictions from the combined output, and each member's.

  Returns:
    (predictions {name: [batch, ...]}, member predictions {name: [N, batch, ...]}).
  """
  outputs = predict(state, batch, task)
  members = jax.vmap(lambda o: task.predictions(o, batch))(outputs)
  return task.predictions(task.combine(outputs), batch), members


def evaluate(
  eval_fn: Callable, state, dataset: dict, batch_size: int, task, buckets=None, width_buckets=None
) -> dict:
  """Each member's metrics over a dataset and those of the members' combined output.

  Returns:
    {'member': {metric: np.float64[N]}, 'ensemble': {metric: float}}. A short last batch
    is padded with length-0 examples that weigh nothing; each batch runs at its length
    bucket (`buckets`) and width bucket (`width_buckets`), as `data.eval_plan` plans.
  """
  widths = None if width_buckets is None else task.example_widths(dataset)
  plan = data_lib.eval_plan(dataset['lengths'], batch_size, buckets, widths, width_buckets)
  batches = data_lib.plan_batches(dataset, plan, task.time_keys, task.width_keys)
  sums = [eval_fn(state, b) for b in batches]
  sums = sharding.host_copy(sums)  # the member axis may span processes
  member, ens = {}, {}
  for name in sums[0]['ensemble']:
    count = sum(np.asarray(s['member'][name][1], np.float64) for s in sums)
    total = sum(np.asarray(s['member'][name][0], np.float64) for s in sums)
    member[name] = total / np.maximum(count, 1.0)
    e_total = sum(float(s['ensemble'][name][0]) for s in sums)
    ens[name] = e_total / max(sum(float(s['ensemble'][name][1]) for s in sums), 1.0)
  return {'member': member, 'ensemble': ens}


# --------------------------------------------------------------------------------- data


def member_indices(num_examples: int, num_members: int, mode: str, seed: int) -> np.ndarray | None:
  """Which examples each member trains on: int[N, n_member], or None for 'shared'."""
  if mode not in DATA_MODES:
    raise ValueError(f'Unknown ensemble data mode {mode!r}; known: {list(DATA_MODES)}.')
  if mode == 'shared':
    return None
  if mode == 'shuffled':
    return np.broadcast_to(np.arange(num_examples), (num_members, num_examples))
  rng = np.random.default_rng([seed, 4])
  if mode == 'bootstrap':
    return rng.integers(0, num_examples, size=(num_members, num_examples))
  per = num_examples // num_members
  if per == 0:
    raise ValueError(f'subsets: {num_examples} examples cannot be split over {num_members}.')
  return rng.permutation(num_examples)[: per * num_members].reshape(num_members, per)


def member_data(dataset: dict, indices: np.ndarray | None) -> list[dict] | None:
  """The per-member training sets the indices select (None for shared data); a member
  that takes every example in order gets `dataset` itself, not a copy."""
  if indices is None:
    return None
  everything = np.arange(len(dataset['lengths']))
  return [
    dataset if np.array_equal(idx, everything) else {k: v[idx] for k, v in dataset.items()}
    for idx in indices
  ]


def epoch_batches(
  dataset: dict,
  members: list[dict] | None,
  batch_size: int,
  *,
  seed: int,
  epoch: int,
  shuffle: bool,
) -> list[dict]:
  """One epoch's batches; per-member batches are stacked on a leading member axis.

  Member i's order is `data.batches(members[i], seed=seed + i, ...)`, so a single-model run
  on members[i] with that seed sees the same batches.
  """
  if members is None:
    return list(data_lib.batches(dataset, batch_size, seed=seed, epoch=epoch, shuffle=shuffle))
  per_member = [
    list(data_lib.batches(m, batch_size, seed=seed + i, epoch=epoch, shuffle=shuffle))
    for i, m in enumerate(members)
  ]
  return [data_lib.stack(list(step)) for step in zip(*per_member, strict=True)]


def stack_steps(batch_list: list[dict], shared_data: bool) -> dict:
  """Stacks a call's batches on the step axis: [S, ...] shared, [N, S, ...] per member."""
  stacked = data_lib.stack(batch_list)
  return stacked if shared_data else {k: np.swapaxes(v, 0, 1) for k, v in stacked.items()}
