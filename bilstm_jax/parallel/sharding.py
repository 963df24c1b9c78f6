"""Device meshes and shardings: data parallelism through JAX's SPMD partitioner.

Nothing here reimplements a training step. A mesh names the devices' axes; a
`NamedSharding` says how an array is split over them; `jax.jit` with those shardings
compiles the ordinary `train_lib.train_step` / `train_steps` into a program in which
XLA inserts the collectives (the all-reduce of gradients over `data`, the all-gathers of
parameters split over `model`).

Mesh axes (`config.mesh`, outermost first):
  member: ensemble members, one slice of the stacked TrainState per group of devices.
  data:   the batch; each device gets batch_size / data examples; gradients all-reduced.
  model:  > 1 splits every parameter and its optimiser state along its largest
          divisible axis (for large hidden sizes); 1 keeps them replicated.

Several processes: each builds the same mesh over all processes' devices, reads only the
rows of each global batch that its own devices hold (`local_rows`, `process_batches`) and
turns them into one global array (`put_batch`).
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bilstm_jax.data import batching as data_lib

AXES = ('member', 'data', 'model')


def mesh_shape(sizes: dict[str, int] | None, num_devices: int) -> dict[str, int]:
  """Axis sizes from {'member', 'data', 'model'}: int (one of them may be -1: the rest).

  Raises:
    ValueError: an unknown axis name, or sizes that do not multiply to `num_devices`.
  """
  sizes = dict(sizes or {})
  unknown = sorted(set(sizes) - set(AXES))
  if unknown:
    raise ValueError(f'Unknown mesh axes {unknown}; known: {list(AXES)}.')
  sizes = {name: int(sizes.get(name, -1 if name == 'data' else 1)) for name in AXES}
  free = [name for name, size in sizes.items() if size == -1]
  if len(free) > 1 or any(size < 1 for name, size in sizes.items() if name not in free):
    raise ValueError(f'Mesh sizes must be >= 1, with at most one -1 (the rest); got {sizes}.')
  fixed = math.prod(size for name, size in sizes.items() if name not in free)
  if free:
    if num_devices % fixed:
      raise ValueError(
        f'Mesh {sizes}: {num_devices} devices do not divide by the fixed axes ({fixed}).'
      )
    sizes[free[0]] = num_devices // fixed
  if math.prod(sizes.values()) != num_devices:
    raise ValueError(
      f'Mesh {sizes} needs {math.prod(sizes.values())} devices; there are {num_devices}.'
    )
  return sizes


def make_mesh(member: int = 1, data: int = -1, model: int = 1, devices=None) -> Mesh:
  """A mesh over `devices` (default: every process's devices) with axes `AXES`.

  Args:
    member: devices an ensemble's members are split over.
    data: devices each batch is split over; -1 (default): all the devices left over.
    model: devices each parameter is split over (1: replicated).
    devices: the devices to use; default `jax.devices()`.

  Returns:
    A `Mesh` of shape (member, data, model) with automatic (SPMD partitioner) axes.

  Example:
    >>> mesh = make_mesh(member=2)  # members split in two, each batch over the rest
  """
  devices = list(jax.devices() if devices is None else devices)
  sizes = mesh_shape({'member': member, 'data': data, 'model': model}, len(devices))
  shape = tuple(sizes[name] for name in AXES)
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * len(AXES), devices=devices)


def describe(mesh: Mesh) -> dict:
  """What `summary.json` records: {'num_devices', 'num_processes', 'mesh': {axis: size}}."""
  return {
    'num_devices': int(mesh.size),
    'num_processes': int(jax.process_count()),
    'mesh': {name: int(size) for name, size in mesh.shape.items()},
  }


def replicated(mesh: Mesh) -> NamedSharding:
  """A sharding that keeps a whole copy of an array on every device of `mesh`."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
  """Fails clearly if a global batch does not split evenly over the `data` axis.

  Padding with length-0 examples would keep the loss exact (they weigh nothing), but it
  would silently spend compute on empty rows in every step; a batch size that divides
  is a one-line config change, so we ask for it instead.
  """
  data = mesh.shape['data']
  if batch_size % data:
    lower = batch_size // data * data
    raise ValueError(
      f"The global batch size {batch_size} does not divide over the mesh's data axis of "
      f'{data} devices (mesh {dict(mesh.shape)}). Use a multiple of {data}, e.g. '
      f'{lower or data} or {lower + data}, or change config.mesh.'
    )


def batch_sharding(mesh: Mesh, batch_axis: int = 0, member_axis: int | None = None):
  """The sharding of a batch's arrays: `batch_axis` over `data` (and `member_axis`).

  One `NamedSharding` serves every array of a batch dict (as a pytree prefix in `jax.jit`)
  because the spec only names the leading axes. Use `batch_axis=1` for the stacked
  batches of `train_lib.train_steps` ([steps, batch, ...]).
  """
  spec = [None] * (max(batch_axis, -1 if member_axis is None else member_axis) + 1)
  spec[batch_axis] = 'data'
  if member_axis is not None:
    spec[member_axis] = 'member'
  return NamedSharding(mesh, P(*spec))


def param_spec(shape: tuple[int, ...], model_size: int) -> tuple:
  """Splits an array's largest axis that `model_size` divides over `model` (else replicated).

  Ties go to the later axis: for the LSTM's [directions, in, 4 * hidden] kernels that is
  the gate axis, whose size grows with the hidden size.
  """
  spec = [None] * len(shape)
  if model_size > 1:
    candidates = [(size, axis) for axis, size in enumerate(shape) if size % model_size == 0]
    if candidates:
      spec[max(candidates)[1]] = 'model'
  return tuple(spec)


def state_sharding(state, mesh: Mesh, *, member_axis: bool = False):
  """Shardings for a TrainState (or any pytree of arrays), with the pytree's structure.

  Parameters and optimiser state are replicated, or split over `model` when the mesh's
  `model` axis is > 1. With `member_axis=True` every leaf has a leading ensemble-member
  axis (a vmapped, stacked TrainState) and that axis is split over `member`.
  """
  model_size = mesh.shape['model']

  def leaf(x):
    shape = np.shape(x)
    if member_axis:
      return NamedSharding(mesh, P('member', *param_spec(shape[1:], model_size)))
    return NamedSharding(mesh, P(*param_spec(shape, model_size)))

  return jax.tree.map(leaf, state)


def member_sharding(stacked_state, mesh: Mesh):
  """`state_sharding` for an ensemble's stacked TrainState (leading member axis)."""
  return state_sharding(stacked_state, mesh, member_axis=True)


def _canonical(x) -> np.ndarray:
  x = np.asarray(x)
  return x.astype(jax.dtypes.canonicalize_dtype(x.dtype), copy=False)


def put(tree, shardings):
  """Places a pytree of host or single-device values on the mesh as global arrays.

  Every process must pass the same values (as after initialising from the same seed);
  each keeps only the pieces its own devices hold. Arrays that already have the target
  sharding are returned as they are. PRNG key arrays are placed through their key data.
  """

  def one(x, sharding):
    if isinstance(x, jax.Array) and x.sharding == sharding:
      return x
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(one(jax.random.key_data(x), sharding))
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return jax.device_put(x, sharding)
    host = _canonical(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(one, tree, shardings)


def local_rows(mesh: Mesh, global_batch_size: int) -> np.ndarray:
  """int[rows]: which rows of a global batch this process's devices hold, in order.

  With one process that is every row; with several, each process reads only these.
  """
  sharding = NamedSharding(mesh, P('data'))
  index_map = sharding.addressable_devices_indices_map((global_batch_size,))
  starts = sorted({(s[0].start or 0, s[0].stop or global_batch_size) for s in index_map.values()})
  return np.concatenate([np.arange(lo, hi) for lo, hi in starts])


def process_batches(
  dataset: dict,
  plan: data_lib.EpochPlan,
  rows: np.ndarray,
  time_keys: tuple[str, ...],
  width_keys: tuple[str, ...] = (),
) -> list[dict]:
  """The `rows` of each of a plan's global batches, reading only those examples.

  Concatenated over processes in row order they are exactly `data.plan_batches(dataset,
  plan, time_keys, width_keys)` (the same order, the same padding rows, the same widths).
  """
  return [
    data_lib.gather(dataset, idx[rows], t, time_keys, w, width_keys)
    for idx, (t, w) in zip(plan.indices, plan.shapes(), strict=True)
  ]


def put_batch(
  local_batch: dict,
  mesh: Mesh,
  global_batch_size: int,
  batch_axis: int = 0,
  member_axis: int | None = None,
):
  """Turns this process's rows of a batch into global arrays split over `data`.

  Args:
    local_batch: numpy arrays holding this process's `local_rows` along `batch_axis`
      (with one process: the whole batch).
    mesh: the mesh.
    global_batch_size: the batch size over all processes.
    batch_axis: 0 for one batch, 1 for stacked batches [steps, batch, ...].
    member_axis: for per-member batches of an ensemble, their member axis (split over
      `member`); every process passes all members' rows along it.

  Returns:
    A dict of `jax.Array`s of the global shape, sharded by `batch_sharding`.
  """
  check_batch_size(global_batch_size, mesh)
  sharding = batch_sharding(mesh, batch_axis, member_axis)

  def one(x):
    x = _canonical(x)
    shape = x.shape[:batch_axis] + (global_batch_size,) + x.shape[batch_axis + 1 :]
    return jax.make_array_from_process_local_data(sharding, x, shape)

  return {k: one(v) for k, v in local_batch.items()}


def take_rows(batch: dict, rows: np.ndarray, batch_axis: int = 0) -> dict:
  """This process's rows of a global host batch (for readers that load whole batches)."""
  return {k: np.take(v, rows, axis=batch_axis) for k, v in batch.items()}


def jit_step(step_fn, mesh: Mesh, state_shardings, *, batch_axis: int = 0, donate: bool = True):
  """`jax.jit(step_fn)` for `(state, batch, rng) -> (state, metrics)` on a mesh.

  The state keeps `state_shardings` in and out, the batch is split over `data` along
  `batch_axis`, the rng and the metrics are replicated. The SPMD partitioner turns the
  single-device step into the data-parallel one (the loss sum over the batch becomes a
  per-device sum plus an all-reduce).
  """
  rep = replicated(mesh)
  return jax.jit(
    step_fn,
    in_shardings=(state_shardings, batch_sharding(mesh, batch_axis), rep),
    out_shardings=(state_shardings, rep),
    donate_argnums=(0,) if donate else (),
  )


def data_parallel(
  fn, mesh: Mesh, global_batch_size: int, *, batch_axis: int = 0, global_rows: bool = False
):
  """Wraps `fn(state, batch, *rest)` so that `batch` arrives as a global array over `data`.

  The wrapper takes numpy batches: this process's rows (`local_rows`, as read by
  `process_batches`), or with `global_rows=True` whole global batches (as `data.batches`
  yields them) of which it keeps this process's rows. `fn` is typically a jitted step; the
  SPMD partitioner follows the shardings of its placed inputs.
  """
  rows = local_rows(mesh, global_batch_size) if global_rows else None

  def wrapped(state, batch, *rest):
    if rows is not None:
      batch = take_rows(batch, rows, batch_axis)
    return fn(state, put_batch(batch, mesh, global_batch_size, batch_axis), *rest)

  return wrapped


def host_copy(tree):
  """numpy copies of a pytree's arrays, each whole, for host-side work.

  An array split over devices of other processes (an ensemble's per-member values with
  the `member` axis across hosts) is gathered from them, a collective: every process must
  call this at the same point, as the processes of one training loop all do.
  """

  leaves, treedef = jax.tree.flatten(tree)
  spread = [
    i
    for i, x in enumerate(leaves)
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated)
  ]
  if spread:  # one collective for all of them
    gathered = multihost_utils.process_allgather([leaves[i] for i in spread], tiled=True)
    for i, x in zip(spread, gathered, strict=True):
      leaves[i] = x
  leaves = [np.asarray(x) if isinstance(x, jax.Array) else x for x in leaves]
  return jax.tree.unflatten(treedef, leaves)
