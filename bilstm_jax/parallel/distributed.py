"""Several processes (hosts) as one JAX program: start-up and which process writes files.

JAX runs one process per host. `jax.distributed.initialize` connects them through a
coordinator (process 0 listens on `host:port`); afterwards `jax.devices()` lists every
process's devices and a jitted function over a mesh of them runs on all processes at
once, with XLA's collectives between them (gloo on CPU, NCCL on GPU). Every process runs
the same training loop; only process 0 writes the files every process would otherwise
write (logs, summaries), while checkpoints are written by all of them together (orbax
coordinates that itself).

  python train.py --config configs/default.py --workdir /tmp/run \
      --config.distributed.coordinator=10.0.0.1:1234 \
      --config.distributed.num_processes=2 --config.distributed.process_id=0
"""

from __future__ import annotations

import os

import jax
from jax.experimental import multihost_utils


def wants_initialize(dist_config) -> bool:
  """Whether `config.distributed` (or `JAX_COORDINATOR_ADDRESS`) asks for several processes."""
  if dist_config is None:
    return False
  if dist_config.coordinator or dist_config.num_processes is not None:
    return True
  return 'JAX_COORDINATOR_ADDRESS' in os.environ or bool(dist_config.get('auto_detect'))


def initialize(dist_config) -> bool:
  """Calls `jax.distributed.initialize` if the config asks for several processes.

  Must run before any other JAX computation in the process. Values left unset
  (`coordinator=''`, `num_processes=None`, `process_id=None`) are filled in by JAX from
  its environment: `JAX_COORDINATOR_ADDRESS`, or a SLURM / Open MPI / Cloud TPU job's
  variables. Calling it again after a successful start does nothing.

  Args:
    dist_config: `config.distributed` with `coordinator` ('host:port' or ''),
      `num_processes`, `process_id` (ints or None), `auto_detect` (bool: start from the
      environment alone) and `timeout_s` (how long to wait for the other processes).

  Returns:
    True if this process is (now) part of a multi-process run.
  """
  if jax.distributed.is_initialized():
    return True
  if not wants_initialize(dist_config):
    return False
  jax.distributed.initialize(
    coordinator_address=dist_config.coordinator or None,
    num_processes=dist_config.num_processes,
    process_id=dist_config.process_id,
    initialization_timeout=int(dist_config.timeout_s),
  )
  return True


def is_writer() -> bool:
  """True on the one process that writes shared files (logs, summaries, plots)."""
  return jax.process_index() == 0


def barrier(name: str) -> None:
  """Waits until every process reaches `barrier(name)`; a no-op with one process."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


class Muted:
  """Stands in for a logger on processes that must not write: every method does nothing.

  Attributes given as keyword arguments (e.g. `path`) are kept, so code that reads them
  still works.
  """

  def __init__(self, **attributes):
    self.__dict__.update(attributes)

  def __getattr__(self, name):
    return lambda *args, **kwargs: None
