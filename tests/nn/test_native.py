"""Building the CPU kernel (`bilstm_jax.nn.native`): the cache, and the fallback without it."""

import os
import subprocess
import sys

import pytest

from tests.utils import ROOT

SCRIPT = """
import warnings, jax, jax.numpy as jnp
from bilstm_jax import BiLSTM
from bilstm_jax.nn import native
x = jnp.ones((2, 3, 4))
model = BiLSTM(5)
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter('always')
  params = model.init(jax.random.key(0), x)
  y, _ = model.apply(params, x)
text = jax.jit(model.apply).lower(params, x).as_text()
print('KERNEL' if 'bilstm_jax_lstm_fwd' in text else 'SCAN', y.shape)
print('\\n'.join(str(w.message) for w in caught))
"""


def _run(tmp_path, script=SCRIPT, **env):
  """Runs `script` in a fresh process with its own kernel cache under tmp_path."""
  env = {**os.environ, 'BILSTM_JAX_CACHE': str(tmp_path / 'cache'), **env}
  return subprocess.run(
    [sys.executable, '-c', script],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
    timeout=300,
    check=True,
  ).stdout


def test_builds_once_into_the_cache_then_reuses_it(tmp_path):
  out = _run(tmp_path)
  assert out.startswith('KERNEL (2, 3, 10)')
  built = list((tmp_path / 'cache').glob('*.so'))
  assert len(built) == 1 and built[0].name.startswith('lstm_cpu-')  # no temporary left
  stamp = built[0].stat().st_mtime_ns
  assert _run(tmp_path).startswith('KERNEL')
  assert built[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt


def test_without_a_compiler_auto_falls_back_to_the_scan_and_says_why(tmp_path):
  out = _run(tmp_path, CXX='no-such-compiler')
  assert out.startswith('SCAN (2, 3, 10)')
  assert "C++ compiler 'no-such-compiler' not found" in out
  assert "using impl='fused'" in out


PARITY = """
import jax, jax.numpy as jnp
from bilstm_jax.nn import fused
from bilstm_jax.nn import native
from bilstm_jax.nn import recurrence
native.ensure_loaded()
worst = worst16 = 0.0
def rel(a, b):
  return max(
    float(jnp.max(jnp.abs(x - y)) / jnp.maximum(jnp.max(jnp.abs(x)), 1e-6))
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
  )
for d, (t, b, f, h) in [(2, (9, 13, 6, 20)), (1, (5, 3, 4, 5)), (2, (4, 16, 3, 32))]:
  ks = jax.random.split(jax.random.key(d + t), 7)
  mask = jax.random.bernoulli(ks[1], 0.7, (t, b))
  args = (
    jax.random.normal(ks[0], (t, b, f)), 0.4 * jax.random.normal(ks[5], (d, f, 4 * h)),
    0.4 * jax.random.normal(ks[6], (d, 4 * h)), 0.4 * jax.random.normal(ks[2], (d, h, 4 * h)),
    jax.random.normal(ks[3], (d, b, h)), jax.random.normal(ks[4], (d, b, h)),
  )
  def loss(layer, *a, dtype=None):
    hs, (h_n, c_n) = layer(a[0], mask, *a[1:], dtype)
    return jnp.sum(jnp.sin(hs)) + jnp.sum(h_n * c_n)
  def grads(layer, dtype=None):
    return jax.grad(loss, range(1, 7))(layer, *args, dtype=dtype)
  worst = max(worst, rel(grads(recurrence.lstm_layer_reference), grads(fused.lstm_layer_native)))
  bf16 = jnp.bfloat16  # against the scan with the same bfloat16 rounding
  worst16 = max(
    worst16, rel(grads(fused.lstm_layer_fused, bf16), grads(fused.lstm_layer_native, bf16))
  )
print(f'WORST {worst:.3e} WORST16 {worst16:.3e}')
"""


@pytest.mark.parametrize('flags', ['-mno-avx512bf16', '-mno-avx512f', '-mno-avx'])
def test_other_instruction_sets_build_and_match_autodiff(tmp_path, flags):
  """AVX-512 without bfloat16 pairs, AVX2 (8 lanes) and portable (no AVX) variants of the
  kernel, built here with those instructions turned off, give the same gradients as
  autodiff through a scan, and in bfloat16 (float32 products of the rounded operands
  there) the same as the bfloat16 scan."""
  out = _run(tmp_path, PARITY, BILSTM_JAX_CXXFLAGS=flags)
  worst, worst16 = (float(v) for v in out.split()[1::2])
  assert worst < 1e-5 and worst16 < 2e-4, out
