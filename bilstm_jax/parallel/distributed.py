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


def wants_initialize(
  coordinator: str = '', num_processes: int | None = None, auto_detect: bool = False
) -> bool:
  """Whether the settings (or `JAX_COORDINATOR_ADDRESS`) ask for several processes."""
  if coordinator or num_processes is not None:
    return True
  return 'JAX_COORDINATOR_ADDRESS' in os.environ or auto_detect


def initialize(
  coordinator: str = '',
  num_processes: int | None = None,
  process_id: int | None = None,
  auto_detect: bool = False,
  timeout_s: int = 300,
) -> bool:
  """Calls `jax.distributed.initialize` if the settings ask for several processes.

  Must run before any other JAX computation in the process. Values left unset
  (`coordinator=''`, `num_processes=None`, `process_id=None`) are filled in by JAX from
  its environment: `JAX_COORDINATOR_ADDRESS`, or a SLURM / Open MPI / Cloud TPU job's
  variables. Calling it again after a successful start does nothing. The app passes
  `config.distributed`'s fields (`app.distributed_settings`).

  Args:
    coordinator: 'host:port' where process 0 listens, or '' (from the environment).
    num_processes: how many processes, or None (from the environment).
    process_id: this process's index, 0 .. num_processes - 1, or None.
    auto_detect: start from the environment alone (a SLURM / Open MPI / TPU job's).
    timeout_s: how long to wait for the other processes to connect.

  Returns:
    True if this process is (now) part of a multi-process run.
  """
  if jax.distributed.is_initialized():
    return True
  if not wants_initialize(coordinator, num_processes, auto_detect):
    return False
  jax.distributed.initialize(
    coordinator_address=coordinator or None,
    num_processes=num_processes,
    process_id=process_id,
    initialization_timeout=int(timeout_s),
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
