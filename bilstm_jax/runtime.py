"""Process-wide runtime settings that speed up JAX. Opt-in; nothing runs on import.

XLA's CPU runtime allocates and frees large buffers every step. With glibc's defaults,
buffers above the (dynamic) mmap threshold are mmapped and unmapped each time, and freed
heap memory is trimmed back to the OS, so every step faults its working set in again
(tens of thousands of minor page faults per step at medium sizes). Raising the mmap and
trim thresholds keeps that memory in the process; `MALLOC_ARENA_MAX=1` keeps all threads
on one arena so the retained memory is reused rather than duplicated per thread.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_ONE_GIB = 1 << 30


def tune_allocator(threshold_bytes: int = _ONE_GIB) -> bool:
  """Raises glibc's mmap and trim thresholds and limits malloc to one arena.

  Call it once at the start of an entry point (a training or benchmark script), before JAX
  allocates its first large buffers. It changes the whole process, so the library never
  calls it by itself. On platforms without glibc it does nothing.

  Args:
    threshold_bytes: the new M_MMAP_THRESHOLD and M_TRIM_THRESHOLD.

  Returns:
    True if all three settings were applied, False otherwise (e.g. not glibc).
  """
  # Inherited by subprocesses; this process gets the same setting through mallopt below.
  os.environ.setdefault('MALLOC_ARENA_MAX', '1')
  name = ctypes.util.find_library('c')
  if name is None:
    return False
  try:
    libc = ctypes.CDLL(name)
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
  mallopt.restype = ctypes.c_int
  ok = mallopt(_M_ARENA_MAX, 1) == 1
  ok &= mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1
  ok &= mallopt(_M_TRIM_THRESHOLD, threshold_bytes) == 1
  return bool(ok)


def enable_compilation_cache(path: str) -> str:
  """Keeps compiled XLA programs on disk under `path`, so later runs skip compiling.

  JAX's persistent cache by default stores only programs that took over a second to
  compile; a small model's steps compile in well under that, so every program is kept
  here. The key covers the program, the JAX/XLA versions and the device, so a stale entry
  is never used. Process-wide, like `tune_allocator`: call it from an entry point.

  Returns:
    The absolute cache directory.
  """
  import jax  # only here: importing this module must stay free of side effects

  path = os.path.abspath(os.path.expanduser(path))
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return path
