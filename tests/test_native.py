"""Building the CPU kernel (`bilstm_jax.native`): the cache, and the fallback without it."""

import os
import subprocess
import sys

from tests.test_checkpoint import ROOT

SCRIPT = """
import warnings, jax, jax.numpy as jnp
from bilstm_jax import BiLSTM, native
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


def _run(tmp_path, **env):
  env = {**os.environ, 'BILSTM_JAX_CACHE': str(tmp_path / 'cache'), **env}
  return subprocess.run(
    [sys.executable, '-c', SCRIPT],
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
