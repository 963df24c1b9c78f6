"""Process-wide runtime settings that speed up JAX on CPU. Opt-in; nothing runs on import.

XLA's CPU runtime allocates a large scratch buffer for every call of a compiled program
(tens to hundreds of MB for a medium-sized LSTM step) and frees it afterwards. With
glibc's defaults that memory is unmapped or trimmed back to the OS after each call, so
every call faults its working set in again: tens of thousands of minor page faults per
step. Two settings together keep it in the process:

  * glibc's mmap and trim thresholds raised (mallopt), so large blocks come from the
    heap and freed ones stay there for the next call;
  * JAX's asynchronous CPU dispatch turned off, so a program runs in the calling
    thread, whose malloc arena is glibc's main heap. From a worker thread the buffer
    would come from a per-thread arena, whose heaps are capped at 64 MB: larger blocks
    are mmapped and unmapped on every call whatever the threshold.

The earlier alternative, one malloc arena for all threads (`MALLOC_ARENA_MAX=1`), gave
the same step time but made XLA's compiler about 30% slower (benchmarks/NOTES.md).

`freeze_gc` is the one setting here that is not about the CPU backend: it keeps Python's
cyclic garbage collector from rescanning the objects that imports leave behind.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# The largest threshold mallopt takes (its value is a C int): 2 GiB - 1. A larger block
# (or a freed one above the trim threshold) goes back to the OS after every call.
MAX_THRESHOLD = 2**31 - 1


def tune_cpu(threshold_bytes: int = MAX_THRESHOLD) -> bool:
  """Raises glibc's mmap and trim thresholds and runs JAX's CPU programs synchronously.

  Call it once at the start of an entry point (a training or benchmark script), before
  JAX's first computation: the dispatch mode is fixed when JAX creates its CPU client.
  It changes the whole process, so the library never calls it by itself. A jitted call
  then returns only when its results are ready; on a CPU, where the host work between
  steps competes for the same cores anyway, that costs nothing measurable here.

  Args:
    threshold_bytes: the new M_MMAP_THRESHOLD and M_TRIM_THRESHOLD, 1 .. MAX_THRESHOLD.
      The default, the largest, keeps XLA buffers of up to 2 GiB in the heap: a 256-member
      small ensemble's 1.9 GB scratch buffer was mapped and faulted in on every call at
      1 GiB (181-197 model-steps/s against 241-252).

  Returns:
    True if both settings took effect; False if JAX had already started (the dispatch
    mode is then unchanged) or the C library is not glibc (thresholds unchanged).

  Raises:
    ValueError: threshold_bytes outside 1 .. MAX_THRESHOLD (before changing anything).
  """
  if not 0 < threshold_bytes <= MAX_THRESHOLD:
    raise ValueError(
      f'threshold_bytes must be in 1 .. {MAX_THRESHOLD} (mallopt takes a C int); '
      f'got {threshold_bytes}.'
    )
  import jax  # only here: importing this module must stay free of side effects
  from jax._src import xla_bridge  # no public way to ask whether the client exists yet

  started = xla_bridge.backends_are_initialized()
  jax.config.update('jax_cpu_enable_async_dispatch', False)
  return _raise_malloc_thresholds(threshold_bytes) and not started


def _raise_malloc_thresholds(threshold_bytes: int) -> bool:
  name = ctypes.util.find_library('c')
  if name is None:
    return False
  try:
    mallopt = ctypes.CDLL(name).mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
  mallopt.restype = ctypes.c_int
  ok = mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1
  ok &= mallopt(_M_TRIM_THRESHOLD, threshold_bytes) == 1
  return bool(ok)


def freeze_gc() -> int:
  """Exempts every object alive now from the cyclic garbage collector (`gc.freeze`).

  Call it once at an entry point, after the imports. jax, flax, orbax and matplotlib leave
  about 320k objects behind, and each full collection scans them all again; tracing,
  lowering and exporting allocate enough to trigger several. In the tutorial run that
  was about 0.17 s of 1.1 s, most of it inside `jax.export`. Frozen objects are still
  freed by reference counting; only ones that become unreachable in a cycle stay.
  Process-wide, like `tune_cpu`.

  Returns:
    How many objects were frozen.
  """
  gc.freeze()
  return gc.get_freeze_count()


def enable_compilation_cache(path: str) -> str:
  """Keeps compiled XLA programs on disk under `path`, so later runs skip compiling.

  JAX's persistent cache by default stores only programs that took over a second to
  compile; a small model's steps compile in well under that, so every program is kept
  here. The key covers the program, the JAX/XLA versions and the device, so a stale entry
  is never used. Process-wide, like `tune_cpu`: call it from an entry point.

  Args:
    path: the directory, or 'default' for xla/ in the kernel cache
      (`bilstm_jax.nn.native.cache_dir()`), so one setting moves both.

  Returns:
    The absolute cache directory.
  """
  import jax

  if path == 'default':
    from bilstm_jax.nn import native

    path = str(native.cache_dir() / 'xla')
  path = os.path.abspath(os.path.expanduser(path))
  os.makedirs(path, exist_ok=True)
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return path
