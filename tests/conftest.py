"""pytest setup: the test tiers, and one XLA compilation cache for the whole run.

`make test` runs everything. `make test-fast` leaves out tests marked `slow` (seconds of
training or compiling each) and `subprocess` (they start train.py or worker processes).

Many tests build the same programs (a tiny config's train step, say) in new `jax.jit`
objects, in both xdist workers: JAX compiles each again. A persistent cache shared by the
run's processes, fresh for every run, compiles each program once. A cache hit loads the
executable XLA compiled from the same program, so results do not change. Set
BILSTM_JAX_TEST_XLA_CACHE=off to compile everything, or to a directory to keep the cache.
"""

import os
import shutil
import tempfile


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: takes seconds of training or compiling')
  config.addinivalue_line('markers', 'subprocess: starts train.py or other processes')
  if hasattr(config, 'workerinput') or 'JAX_COMPILATION_CACHE_DIR' in os.environ:
    return  # an xdist worker inherits the controller's setting; a user's own wins
  path = os.environ.get('BILSTM_JAX_TEST_XLA_CACHE', '')
  if path == 'off':
    return
  if not path:
    path = tempfile.mkdtemp(prefix='bilstm_jax_test_xla_')
    config.add_cleanup(lambda: shutil.rmtree(path, ignore_errors=True))
  # Read by JAX at import, in this process and in every worker and subprocess it starts.
  os.environ['JAX_COMPILATION_CACHE_DIR'] = path
  os.environ['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] = '0.2'
