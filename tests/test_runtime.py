"""Process-wide runtime settings (`bilstm_jax.runtime`), each checked in a fresh process."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SCRIPT = """
import jax, jax.numpy as jnp
from bilstm_jax import runtime
first = runtime.tune_cpu()
x = jnp.ones((1024, 1024))
y = x @ x  # with synchronous dispatch the result is ready when the call returns
print(first, jax.config.read('jax_cpu_enable_async_dispatch'), y.is_ready(), runtime.tune_cpu())
"""


def test_tune_cpu_dispatches_synchronously_and_says_when_too_late():
  out = subprocess.run(
    [sys.executable, '-c', _SCRIPT],
    cwd=ROOT,
    capture_output=True,
    text=True,
    check=True,
    timeout=120,
  )
  # Applied before JAX started; a second call after the first computation reports False.
  assert out.stdout.split() == ['True', 'False', 'True', 'False'], out.stdout + out.stderr
