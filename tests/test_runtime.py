"""Process-wide runtime settings (`bilstm_jax.runtime`), each checked in a fresh process."""

import os
import subprocess
import sys

import pytest

from bilstm_jax import runtime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = """
import jax, jax.numpy as jnp
from bilstm_jax import runtime
first = runtime.tune_cpu()
x = jnp.ones((1024, 1024))
y = x @ x  # with synchronous dispatch the result is ready when the call returns
print(first, jax.config.read('jax_cpu_enable_async_dispatch'), y.is_ready(), runtime.tune_cpu())
"""


def _run(script: str) -> subprocess.CompletedProcess:
  return subprocess.run(
    [sys.executable, '-c', script], cwd=ROOT, capture_output=True, text=True, timeout=120
  )


@pytest.mark.subprocess
def test_tune_cpu_dispatches_synchronously_and_says_when_too_late():
  out = _run(_SCRIPT)
  # Applied before JAX started; a second call after the first computation reports False.
  assert out.stdout.split() == ['True', 'False', 'True', 'False'], out.stdout + out.stderr


_GC_SCRIPT = """
import gc
from bilstm_jax import runtime
from bilstm_jax.training import loop as train_lib
frozen = runtime.freeze_gc()
print(frozen > 100_000, gc.get_freeze_count() == frozen, len(gc.get_objects()) < frozen)
"""


@pytest.mark.subprocess
def test_freeze_gc_takes_the_imported_objects_out_of_the_collectors_scans():
  out = _run(_GC_SCRIPT)
  assert out.stdout.split() == ['True', 'True', 'True'], out.stdout + out.stderr


@pytest.mark.parametrize('threshold', [0, 2**31])
def test_tune_cpu_refuses_thresholds_mallopt_cannot_take(threshold):
  # Raised before any setting changes, so this process stays as it was.
  with pytest.raises(ValueError, match='mallopt takes a C int'):
    runtime.tune_cpu(threshold)


_CACHE_SCRIPT = """
import os, jax, jax.numpy as jnp
from bilstm_jax import runtime
path = runtime.enable_compilation_cache('default')
print(path == os.path.join(os.environ['BILSTM_JAX_CACHE'], 'xla'))
print(jax.config.jax_compilation_cache_dir == path)
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
print(len(os.listdir(path)) > 0)
"""


@pytest.mark.subprocess
def test_the_default_compilation_cache_lives_beside_the_kernels(tmp_path):
  # One setting (BILSTM_JAX_CACHE, or XDG_CACHE_HOME) moves the kernels and the XLA
  # programs together, and even a program that compiles in milliseconds is kept.
  env = {**os.environ, 'BILSTM_JAX_CACHE': str(tmp_path / 'cache')}
  out = subprocess.run(
    [sys.executable, '-c', _CACHE_SCRIPT],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
    env=env,
  )
  assert out.stdout.split() == ['True', 'True', 'True'], out.stdout + out.stderr
