"""The CPU kernel of the LSTM recurrence (`lstm_cpu.cc`): prebuilt in a wheel, else built here.

`bilstm_jax.nn.fused` runs its two loops (the forward recurrence and the backward one) either
as `lax.scan`s or, with `native=True`, as the two XLA FFI handlers of `lstm_cpu.cc`, which
run each direction (or part of the batch) on its own thread for the whole sequence. The
forward handler also computes the input projection step by step and writes the weight
gradients' left operand ([x^T; h_prev^T; 1]); the weight-gradient matmul and the custom
VJP around the loops are the same code either way.

Where the library comes from (`$BILSTM_JAX_KERNEL`, read once per process):
- `auto` (default): a wheel carries the kernel prebuilt in several instruction-set variants
  (`_build.VARIANTS`: x86-64, x86-64-v3 (AVX2+FMA), x86-64-v4 (AVX-512), x86-64-v4-bf16
  (AVX512-BF16); armv8-a), and the best one this CPU's /proc/cpuinfo features allow is
  loaded. Without one (an editable checkout, another architecture, a prebuilt library that
  fails to load, or `$BILSTM_JAX_CXXFLAGS` set) the kernel is compiled on first use with
  `-march=native`.
- `native`: always the first-use build with `-march=native`.
- a variant's name: that variant, prebuilt if shipped, else compiled here with its flags.
- `off`: no kernel; `BiLSTM(impl='auto')` runs the scan.

A first-use build runs the system's C++ compiler (`$CXX`, which may carry arguments such
as `ccache g++`; else `c++`) into a cache directory (`$BILSTM_JAX_CACHE`, default
`~/.cache/bilstm_jax`), keyed by a hash of the source, the compiler's version, the flags,
the JAX version and, for `-march=native`, the CPU's `flags`/`Features` lines. Builds run
under a file lock (concurrent first users, such as the processes of one job, build once)
and are written atomically and world-readable; builds unused for 30 days, and all but
the 16 most recently used, are removed. `$BILSTM_JAX_CXXFLAGS` adds compiler flags.

Results: variants share every line of code that their instruction sets share, but not
every rounding. x86-64 multiplies and adds separately where the others fuse them (FMA);
AVX-512 rounds exp's range reduction in one instruction where AVX2 rounds in two steps;
with `bf16=True` only the AVX512-BF16 variant multiplies bfloat16 pairs in hardware (with
its own summation order). Each stays within float32 rounding of the scan
(tests/nn/test_native.py); x86-64-v4 and x86-64-v4-bf16 agree bit for bit in float32.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import functools
import hashlib
import json
import os
import shlex
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp

from bilstm_jax.nn.native import _build
from bilstm_jax.nn.recurrence import vary_like

_TARGETS = {'bilstm_jax_lstm_fwd': 'LstmFwd', 'bilstm_jax_lstm_bwd': 'LstmBwd'}
_PRUNE_AGE_S = 30 * 24 * 3600  # a build unused this long is removed
_PRUNE_KEEP = 16  # and beyond this many, the least recently used
_STALE_TMP_S = 3600  # a temporary file this old is a build that died


class NativeUnavailable(RuntimeError):
  """The CPU kernel could not be built or loaded (the message says why)."""


@dataclasses.dataclass(frozen=True)
class KernelInfo:
  """What `native.info()` reports.

  variant: the loaded variant ('x86-64-v4-bf16', ..., 'native' for a -march=native
    build), or None when the kernel is unavailable (then `error` says why).
  prebuilt: whether the library came with the installed package (not compiled here).
  path: the loaded shared library.
  error: why no kernel, or why a preferred library was passed over, e.g. a prebuilt
    variant that failed to load before a first-use build succeeded; None otherwise.
  runnable: the variants of this architecture that this CPU can run, best first.
  shipped: the prebuilt variants in this install (none in an editable checkout).
  """

  variant: str | None
  prebuilt: bool
  path: str | None
  error: str | None
  runnable: tuple[str, ...]
  shipped: tuple[str, ...]


def cache_dir() -> Path:
  """Where compiled kernels are kept: `$BILSTM_JAX_CACHE`, else `~/.cache/bilstm_jax`."""
  default = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'bilstm_jax'
  return Path(os.environ.get('BILSTM_JAX_CACHE', default))


@functools.cache
def shipped() -> dict[str, Path]:
  """The prebuilt variants next to the source, {name: path}, if built from this source."""
  here = _build.SOURCE.parent
  try:
    manifest = json.loads((here / _build.MANIFEST).read_text())
  except (OSError, ValueError):
    return {}
  if manifest.get('source_sha256') != _build.source_hash():
    return {}  # a checkout whose lstm_cpu.cc changed since they were built
  try:
    major, minor = _build.ffi_api_version(jax.ffi.include_dir())
  except (OSError, KeyError):
    return {}
  built = manifest.get('ffi_api', [-1, 0])
  if built[0] != major or built[1] > minor:
    return {}  # built against a newer XLA FFI than this jaxlib's
  names = {v.name: v for v in _build.machine_variants()}
  paths = {n: here / names[n].filename for n in manifest.get('variants', ()) if n in names}
  return {n: p for n, p in paths.items() if p.exists()}


@contextlib.contextmanager
def _file_lock(directory: Path) -> Iterator[None]:
  """An exclusive lock shared by every process that builds into `directory`."""
  import fcntl

  fd = os.open(directory / '.lock', os.O_RDWR | os.O_CREAT, 0o644)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    yield
  finally:
    os.close(fd)  # releases the lock


def _prune(directory: Path, keep: Path) -> None:
  """Removes builds unused for _PRUNE_AGE_S or beyond the _PRUNE_KEEP most recent, and
  temporaries of builds that died. Files another user owns are left alone."""
  now = time.time()

  def mtime(p):
    try:
      return p.stat().st_mtime
    except OSError:
      return now

  builds = sorted(directory.glob('lstm_cpu-*.so'), key=mtime, reverse=True)
  old = [p for i, p in enumerate(builds) if i >= _PRUNE_KEEP or now - mtime(p) > _PRUNE_AGE_S]
  old += [p for p in directory.glob('.tmp-*.so') if now - mtime(p) > _STALE_TMP_S]
  for p in old:
    if p != keep:
      with contextlib.suppress(OSError):
        p.unlink()


def _cache_key(cxx: list[str], variant: _build.Variant, extra: list[str]) -> str:
  """What a build depends on: command, compiler, JAX, source and, for -march=native, the
  CPU (x86 `flags`, ARM `Features`): such code must not reach another CPU sharing the cache."""
  parts = [shlex.join(_build.command(cxx, variant, '', '', extra)), _build.compiler_version(cxx)]
  parts += [jax.__version__, _build.source_hash()]
  if variant == _build.NATIVE:
    parts += _build.cpu_lines()
  key = hashlib.sha256()
  for part in parts:
    key.update(part.encode() + b'\0')
  return key.hexdigest()[:16]


def _compile(variant: _build.Variant) -> Path:
  """Builds `variant` unless the cache has it; returns the shared library's path."""
  cxx = _build.compiler()
  extra = shlex.split(os.environ.get('BILSTM_JAX_CXXFLAGS', ''))
  directory = cache_dir()
  target = directory / f'lstm_cpu-{variant.name}-{_cache_key(cxx, variant, extra)}.so'
  if not target.exists():
    if not directory.exists():
      directory.mkdir(parents=True, exist_ok=True)
      os.chmod(directory, 0o755)
    with _file_lock(directory):
      if not target.exists():  # another process may have built it while this one waited
        _build.compile_to(target, variant, jax.ffi.include_dir(), cxx, extra)
        _prune(directory, keep=target)
  with contextlib.suppress(OSError):
    os.utime(target)  # marks it used, for _prune
  return target


def _register(path: Path) -> None:
  lib = ctypes.CDLL(str(path))
  handlers = {name: getattr(lib, symbol) for name, symbol in _TARGETS.items()}
  for name, handler in handlers.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler), platform='cpu')


def _candidates(mode: str) -> list[tuple[_build.Variant, Path | None]]:
  """What to try, in order: (variant, its prebuilt library, or None to compile it here)."""
  if mode == 'off':
    raise NativeUnavailable('turned off by $BILSTM_JAX_KERNEL=off')
  prebuilt = shipped()
  if mode == 'native':
    return [(_build.NATIVE, None)]
  if mode == 'auto':
    best = [(v, prebuilt[v.name]) for v in _build.runnable() if v.name in prebuilt][:1]
    if os.environ.get('BILSTM_JAX_CXXFLAGS'):
      best = []  # extra flags ask for a build
    return [*best, (_build.NATIVE, None)]
  variants = {v.name: v for v in _build.machine_variants()}
  if mode not in variants:
    known = ', '.join(['auto', 'native', 'off', *variants])
    raise NativeUnavailable(f'$BILSTM_JAX_KERNEL={mode!r} is not one of: {known}')
  variant = variants[mode]
  missing = variant.needs - _build.cpu_features()
  if missing:
    raise NativeUnavailable(f'this CPU cannot run {mode} (it lacks {" ".join(sorted(missing))})')
  return [(variant, prebuilt.get(mode))]


def _try_load() -> KernelInfo:
  runnable = tuple(v.name for v in _build.runnable())
  errors = []
  try:
    candidates = _candidates(os.environ.get('BILSTM_JAX_KERNEL', '').strip() or 'auto')
  except NativeUnavailable as e:
    candidates, errors = [], [str(e)]
  for variant, prebuilt in candidates:
    try:
      path = prebuilt or _compile(variant)
      _register(path)
    except Exception as e:  # noqa: BLE001 (any failure here means: the next one, or the scan)
      what = f'the prebuilt {variant.name} library' if prebuilt else f'the {variant.name} build'
      errors.append(f'{what} failed: {e}')
      continue
    error = '; '.join(errors) or None
    return KernelInfo(
      variant.name, prebuilt is not None, str(path), error, runnable, tuple(shipped())
    )
  return KernelInfo(None, False, None, '; '.join(errors), runnable, tuple(shipped()))


_state = threading.Lock()
_loaded: list[KernelInfo] = []  # the outcome, once per process (loading cannot be undone)


def info() -> KernelInfo:
  """Loads the kernel if no call did yet, and says which library this process runs.

  Example: `native.info().variant` is 'x86-64-v4-bf16' on a CPU with AVX512-BF16 from a
  wheel, 'native' in an editable checkout with a compiler, None without a kernel.
  """
  with _state:
    if not _loaded:
      _loaded.append(_try_load())
    return _loaded[0]


def variant() -> str | None:
  """The loaded variant's name (`info().variant`): None when the scan runs instead."""
  return info().variant


def ensure_loaded() -> None:
  """Loads the kernel (prebuilt, else built once per machine) and registers it with XLA;
  raises `NativeUnavailable` saying why it cannot."""
  loaded = info()
  if loaded.variant is None:
    raise NativeUnavailable(loaded.error)


@functools.cache
def _builds() -> bool:
  """Whether the kernel loads; the first call that finds it does not warns, once."""
  try:
    ensure_loaded()
  except NativeUnavailable as e:
    warnings.warn(
      f"bilstm_jax: the CPU kernel is unavailable, using impl='fused' (the portable scan, "
      f'1.4-2.2x slower on CPU): {e}',
      stacklevel=3,
    )
    return False
  return True


_disabled = threading.local()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
  """Within this context `BiLSTM(impl='auto')` and `impl='native'` trace the portable scan
  ('fused', the same numbers within float32 rounding), e.g. for `jax.export`, which cannot
  serialize a machine-local custom call."""
  before = getattr(_disabled, 'on', False)
  _disabled.on = True
  try:
    yield
  finally:
    _disabled.on = before


def is_disabled() -> bool:
  """Whether a `disabled()` context is in effect."""
  return getattr(_disabled, 'on', False)


def preferred() -> bool:
  """Whether `BiLSTM(impl='auto')` runs this kernel: JAX computes on one CPU device, the
  kernel builds here, and `disabled()` is not in effect. With several devices the layer may
  be sharded, which the custom call cannot be (XLA would gather its operands onto every
  device), so the scan is used."""
  if is_disabled():
    return False
  return jax.default_backend() == 'cpu' and jax.device_count() == 1 and _builds()


def _f32(*arrays):
  return [jnp.asarray(a, jnp.float32) for a in arrays]


def _result_type(*operands):
  """The kernel's results' type (shape to be set): float32, varying over the mesh axes the
  operands vary over inside `jax.shard_map` (`recurrence.vary_like`)."""
  return jax.typeof(vary_like(jnp.zeros((), jnp.float32), *operands))


def lstm_fwd(x, valid, w_ih, bias, w_hh, h0, c0, bf16: bool = False) -> tuple:
  """The forward recurrence of both directions. Any leading vmap dimensions are members.

  Each step's matmul multiplies [x_t, h] by [w_ih; w_hh]: the input projection is computed
  inside the recurrence rather than read back from a [time, batch, dirs * 4h] buffer.

  Args:
    x: float32[time, batch, features], the layer's input (time-major).
    valid: bool[time, batch], True at real (unpadded) steps.
    w_ih: float32[dirs, features, 4h]; bias: float32[dirs, 4h];
    w_hh: float32[dirs, hidden, 4h]; h0, c0: [dirs, batch, hidden].
    bf16: round the step matmul's operands (x, h and the weights) to bfloat16, as
      `recurrence.matmul(..., dtype=jnp.bfloat16)` does; sums and all else stay float32.

  Returns:
    hs: float32[time, batch, dirs * hidden], the outputs, zero at padded steps.
    acts: a tuple with each direction's float32[time, batch, 4h] gate activations.
    lhs: a tuple with each direction's float32[features + hidden + 1, time * batch]: x,
      then the state before each time step, transposed (natural time order), then a row
      of ones; the left operand of the weight gradients' matmul.
    c_prev, tc: float32[time, dirs, batch, hidden], the cell state before each step and
      tanh of the new one, in step order (time T-1-s for the backward direction).
    h_n, c_n: float32[dirs, batch, hidden], the states after each direction's last step.
  """
  ensure_loaded()
  time, batch, features = x.shape
  dirs, hidden = w_hh.shape[:2]
  result = _result_type(x, valid, w_ih, bias, w_hh, h0, c0)

  def shape(*dims):
    return result.update(shape=dims)

  # Per direction: each direction's buffer is its own operand (the second empty with one).
  def per_dir(*dims):
    return shape(*dims), shape(dims[0] if dirs == 2 else 0, *dims[1:])

  shapes = (
    shape(time, batch, dirs * hidden),
    *per_dir(time, batch, 4 * hidden),
    *per_dir(features + hidden + 1, time * batch),
    shape(time, dirs, batch, hidden),
    shape(time, dirs, batch, hidden),
    shape(dirs, batch, hidden),
    shape(dirs, batch, hidden),
  )
  call = jax.ffi.ffi_call('bilstm_jax_lstm_fwd', shapes, vmap_method='broadcast_all')
  x, w_ih, bias, w_hh, h0, c0 = _f32(x, w_ih, bias, w_hh, h0, c0)
  hs, a0, a1, l0, l1, *rest = call(x, valid.astype(bool), w_ih, bias, w_hh, h0, c0, bf16=bf16)
  return (hs, (a0, a1)[:dirs], (l0, l1)[:dirs], *rest)


def lstm_bwd(acts, valid, d_hs, tc, c_prev, w_hh, d_hn, d_cn, bf16: bool = False) -> tuple:
  """The backward recurrence, from `lstm_fwd`'s residuals and the output gradients.

  Args:
    acts, valid, tc, c_prev, w_hh: as `lstm_fwd` takes or returns them.
    d_hs: float32[time, batch, dirs * hidden], the gradient of `hs`.
    d_hn, d_cn: float32[dirs, batch, hidden], the gradients of `h_n` and `c_n`.
    bf16: as for `lstm_fwd` (the operands are the gate gradients and w_hh).

  Returns:
    d_gates: a tuple like `acts` (whose buffers it reuses), each direction's
      float32[time, batch, 4h] gradient of the gate pre-activations.
    dh0, dc0: float32[dirs, batch, hidden], the gradients of `h0` and `c0`.
  """
  ensure_loaded()
  dirs = w_hh.shape[0]
  if dirs == 1:
    acts = (acts[0], jnp.zeros((0, *acts[0].shape[1:]), jnp.float32))
  result = _result_type(acts, valid, d_hs, tc, c_prev, w_hh, d_hn, d_cn)
  shapes = tuple(result.update(shape=a.shape) for a in (*acts, d_hn, d_cn))
  call = jax.ffi.ffi_call(
    'bilstm_jax_lstm_bwd', shapes, vmap_method='broadcast_all', input_output_aliases={0: 0, 1: 1}
  )
  g0, g1, dh0, dc0 = call(
    *acts, valid.astype(bool), *_f32(d_hs, tc, c_prev, w_hh, d_hn, d_cn), bf16=bf16
  )
  return (g0, g1)[:dirs], dh0, dc0
