"""The CPU kernel of the LSTM recurrence (`lstm_cpu.cc`), built on first use.

`bilstm_jax.nn.fused` runs its two loops (the forward recurrence and the backward one) either
as `lax.scan`s or, with `native=True`, as the two XLA FFI handlers of `lstm_cpu.cc`, which
run each direction (or part of the batch) on its own thread for the whole sequence. The
forward handler also computes the input projection step by step and writes the weight
gradients' left operand ([x^T; h_prev^T; 1]); the weight-gradient matmul and the custom
VJP around the loops are the same code either way.

The C++ file is compiled once per machine with the system's C++ compiler (`$CXX`, else
`c++`) into a cache directory (`$BILSTM_JAX_CACHE`, default `~/.cache/bilstm_jax`), keyed
by a hash of the source, the compiler's version, the flags, the CPU's feature flags and
the JAX version, and written atomically so that concurrent first uses cannot load a
half-written library. `$BILSTM_JAX_CXXFLAGS` adds compiler flags (the tests use it to
build the AVX2 and the portable variants on an AVX-512 machine).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp

from bilstm_jax.nn.recurrence import vary_like

_SOURCE = Path(__file__).with_name('lstm_cpu.cc')
_FLAGS = ('-O3', '-march=native', '-std=c++17', '-shared', '-fPIC', '-pthread')
_TARGETS = {'bilstm_jax_lstm_fwd': 'LstmFwd', 'bilstm_jax_lstm_bwd': 'LstmBwd'}


class NativeUnavailable(RuntimeError):
  """The CPU kernel could not be built or loaded (the message says why)."""


def cache_dir() -> Path:
  """Where compiled kernels are kept: `$BILSTM_JAX_CACHE`, else `~/.cache/bilstm_jax`."""
  default = Path(os.environ.get('XDG_CACHE_HOME', Path.home() / '.cache')) / 'bilstm_jax'
  return Path(os.environ.get('BILSTM_JAX_CACHE', default))


def _compiler() -> str:
  cxx = os.environ.get('CXX') or 'c++'
  path = shutil.which(cxx)
  if path is None:
    raise NativeUnavailable(f'C++ compiler {cxx!r} not found (set CXX, or install g++)')
  return path


def _cpu_flags() -> str:
  """The CPU's feature flags: `-march=native` code must not be reused on another CPU that
  shares the cache directory."""
  try:
    with open('/proc/cpuinfo') as f:
      return next((line for line in f if line.startswith('flags')), '')
  except OSError:
    return ''


def _build() -> Path:
  """Compiles lstm_cpu.cc unless the cache has it; returns the shared library's path."""
  cxx = _compiler()
  version = subprocess.run([cxx, '--version'], capture_output=True, text=True).stdout
  key = hashlib.sha256()
  flags = [*_FLAGS, *shlex.split(os.environ.get('BILSTM_JAX_CXXFLAGS', ''))]
  for part in (' '.join(flags), version, jax.__version__, _cpu_flags()):
    key.update(part.encode())
  key.update(_SOURCE.read_bytes())
  target = cache_dir() / f'lstm_cpu-{key.hexdigest()[:16]}.so'
  if target.exists():
    return target
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(suffix='.so', dir=target.parent)
  os.close(fd)
  cmd = [cxx, *flags, f'-I{jax.ffi.include_dir()}', str(_SOURCE), '-o', tmp]
  proc = subprocess.run(cmd, capture_output=True, text=True)
  if proc.returncode != 0:
    os.unlink(tmp)
    raise NativeUnavailable(f'compiling {_SOURCE.name} failed:\n{" ".join(cmd)}\n{proc.stderr}')
  os.replace(tmp, target)  # atomic: a concurrent first use sees all of it or nothing
  return target


@functools.cache
def _load() -> None:
  lib = ctypes.CDLL(str(_build()))
  for name, symbol in _TARGETS.items():
    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu')


def ensure_loaded() -> None:
  """Builds (once per machine) and registers the kernel; raises `NativeUnavailable`."""
  try:
    _load()
  except OSError as e:
    raise NativeUnavailable(f'loading the compiled kernel failed: {e}') from e


@functools.cache
def _builds() -> bool:
  try:
    ensure_loaded()
  except NativeUnavailable as e:
    warnings.warn(
      f"bilstm_jax: the CPU kernel is unavailable, using impl='fused': {e}", stacklevel=3
    )
    return False
  return True


_disabled = threading.local()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
  """Within this context `BiLSTM(impl='auto')` traces the portable scan ('fused'), e.g. for
  `jax.export`, which cannot serialize a machine-local custom call."""
  before = getattr(_disabled, 'on', False)
  _disabled.on = True
  try:
    yield
  finally:
    _disabled.on = before


def preferred() -> bool:
  """Whether `BiLSTM(impl='auto')` runs this kernel: JAX computes on one CPU device, the
  kernel builds here, and `disabled()` is not in effect. With several devices the layer may
  be sharded, which the custom call cannot be (XLA would gather its operands onto every
  device), so the scan is used."""
  if getattr(_disabled, 'on', False):
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
