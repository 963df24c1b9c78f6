"""The orbax pieces under `checkpoint.Checkpoints`: the manager with its four items, the
JSON `meta` item (with the 'commit' fault point, `bilstm_jax.faults`), step names that
hide damaged checkpoints, and restore targets placed on this process's devices."""

from __future__ import annotations

import dataclasses
import logging

import jax
import orbax.checkpoint as ocp

from bilstm_jax import faults


def open_manager(directory: str, options: ocp.CheckpointManagerOptions) -> ocp.CheckpointManager:
  """The manager of `directory` with the items `params`, `train`, `model_state` (only when
  the model has one) and `meta`."""
  absl_logger = logging.getLogger('absl')
  absl_logger.addFilter(_quiet_read_only)  # loading for prediction is not news
  try:
    return ocp.CheckpointManager(
      directory,
      options=options,
      item_handlers={
        'params': ocp.StandardCheckpointHandler(),
        'train': ocp.StandardCheckpointHandler(),
        'model_state': ocp.StandardCheckpointHandler(),
        'meta': MetaHandler(),
      },
    )
  finally:
    absl_logger.removeFilter(_quiet_read_only)


class MetaHandler(ocp.JsonCheckpointHandler):
  """JSON handler with the 'commit' fault point inside the save: once the meta item is
  written, before the checkpoint is committed (a kill there leaves a partial one)."""

  async def _save_fn(self, x, directory):
    await super()._save_fn(x, directory)
    faults.point('commit')


@ocp.args.register_with_handler(MetaHandler, for_save=True)
@dataclasses.dataclass
class MetaSave(ocp.args.JsonSave):
  pass


@ocp.args.register_with_handler(MetaHandler, for_restore=True)
@dataclasses.dataclass
class MetaRestore(ocp.args.JsonRestore):
  pass


class Hiding:
  """Orbax's standard step names, with some steps left out (damaged, read-only runs)."""

  def __init__(self, hidden: set[int]):
    self.base, self.hidden = ocp.step.standard_name_format(), hidden

  def build_name(self, step: int) -> str:
    """The directory name of `step`, as orbax names it."""
    return self.base.build_name(step)

  def find_all(self, base_path):
    """The steps found under `base_path`, less the hidden ones."""
    return (m for m in self.base.find_all(base_path) if m.step not in self.hidden)

  def find_step(self, base_path, step: int):
    """Step `step` under `base_path`; ValueError for a hidden (damaged) one."""
    if step in self.hidden:
      raise ValueError(f'checkpoint {step} is damaged')
    return self.base.find_step(base_path, step)


def _quiet_read_only(record: logging.LogRecord) -> bool:
  """Drops the warning orbax logs whenever a manager is opened read-only."""
  return not record.getMessage().startswith('Given directory is read only')


def restore_target(x) -> jax.ShapeDtypeStruct:
  """What orbax restores a leaf as: `x`'s shape, dtype and sharding, or, for a leaf without
  one (from `jax.eval_shape`), this process's first device. Left to itself, orbax would
  reuse the saved sharding and refuse a checkpoint written on other devices or processes
  ("Topology mismatch")."""
  target = ocp.utils.to_shape_dtype_struct(x)
  if getattr(target, 'sharding', None) is None:
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.ShapeDtypeStruct(target.shape, target.dtype, sharding=device)
  return target
