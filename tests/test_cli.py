"""train.py's help, --print_config and the workdir lock.

The ways train.py must fail (one `Error:` line, exit status 1, no workdir left behind) are
rows of the bad-input catalogue: tests/bad_input_catalogue.py, run by tests/test_bad_input.py.
"""

import fcntl
import os
import subprocess
import sys

import pytest

from bilstm_jax import errors
from bilstm_jax.training import workdir as workdir_lib
from tests.utils import ROOT


def _run(args, workdir):
  args = [a.replace('WORKDIR', workdir) for a in args]
  return subprocess.run(
    [sys.executable, 'train.py', '--workdir', workdir, *args],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=120,
  )


@pytest.mark.subprocess
def test_help_and_print_config(tmp_path):
  out = subprocess.run(
    [sys.executable, 'train.py', '--help'], cwd=ROOT, capture_output=True, text=True
  )
  assert out.returncode == 0 and 'print_config' in out.stdout and '--workdir' in out.stdout
  out = _run(['--config=default', '--config.model.hidden_size=3', '--print_config'], 'unused')
  assert out.returncode == 0 and '"hidden_size": 3' in out.stdout
  assert not os.path.exists(os.path.join(ROOT, 'unused'))


@pytest.mark.subprocess
def test_every_shipped_config_loads_by_name_outside_the_checkout(tmp_path):
  """As the installed `bilstm-jax` does it: from another directory, with no checkout on
  sys.path (the configs import one another as bilstm_jax.configs, not as configs)."""
  names = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, 'configs')) if f.endswith('.py'))
  names.remove('__init__')
  assert len(names) >= 10
  command = 'import sys; from bilstm_jax import cli; sys.argv[0] = "bilstm-jax"; cli.main()'
  for name in names:
    out = subprocess.run(
      [sys.executable, '-c', command, f'--config={name}', '--print_config'],
      cwd=tmp_path,
      capture_output=True,
      text=True,
      timeout=120,
    )
    assert out.returncode == 0, f'--config={name}: {out.stderr[-2000:]}'
    assert '"model"' in out.stdout, name


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
  holder = workdir_lib.Lock(str(tmp_path)).acquire()
  try:
    with pytest.raises(errors.RunError, match=rf'in use by process {os.getpid()} on '):
      workdir_lib.Lock(str(tmp_path)).acquire()
  finally:
    holder.release()
  workdir_lib.Lock(str(tmp_path)).acquire().release()  # free again once released


@pytest.mark.subprocess
def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
  # A process that takes the lock and is SIGKILLed: the kernel drops its lock with it.
  code = (
    'import sys, time\n'
    'from bilstm_jax.training import workdir\n'
    'workdir.Lock(sys.argv[1]).acquire()\n'
    'print("locked", flush=True)\n'
    'time.sleep(60)\n'
  )
  proc = subprocess.Popen(
    [sys.executable, '-c', code, str(tmp_path)], cwd=ROOT, stdout=subprocess.PIPE, text=True
  )
  assert proc.stdout.readline().strip() == 'locked'
  with open(tmp_path / '.lock') as f, pytest.raises(BlockingIOError):
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
  proc.kill()
  proc.wait()
  workdir_lib.Lock(str(tmp_path)).acquire().release()
