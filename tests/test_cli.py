"""train.py fails in one line: every config, usage and data error is one `Error:` line on
stderr, exit status 1, and no workdir is left behind for a run that cannot start."""

import fcntl
import os
import subprocess
import sys

import pytest

from bilstm_jax import errors
from bilstm_jax.training import workdir as workdir_lib
from tests.utils import ROOT

# (flags after `train.py`, a fragment the one line must hold). WORKDIR is replaced by a
# fresh path per case.
CASES = {
  'typo in a key': (
    ['--config=default', '--config.model.hiden_size=4'],
    "no config key 'hiden_size' (did you mean 'hidden_size'?)",
  ),
  'wrong value type': (['--config=default', '--config.model.hidden_size=4.5'], 'hidden_size'),
  'unknown optimiser': (['--config=default', '--config.optim.name=sgd'], "optim.name='sgd'"),
  'unknown schedule': (['--config=default', '--config.optim.schedule=linear'], 'optim.schedule'),
  'hidden size 0': (['--config=default', '--config.model.hidden_size=0'], 'must be >= 1'),
  'negative rate': (['--config=default', '--config.optim.learning_rate=-1'], 'must be >= 0'),
  'dropout 1.5': (['--config=default', '--config.model.dropout=1.5'], 'must lie in [0, 1)'),
  'batch size 0': (['--config=default', '--config.train.batch_size=0'], 'train.batch_size=0'),
  'batch larger than data': (
    ['--config=default', '--config.train.batch_size=1000'],
    'larger than the training set (256 examples)',
  ),
  'nothing to train': (
    ['--config=default', '--config.train.epochs=0'],
    'train.epochs=0: or train.num_steps > 0',
  ),
  'unknown task': (['--config=default', '--config.data.task=nope'], "data.task='nope'"),
  'unknown metric': (['--config=default', '--config.train.metric=dev_acc'], "'dev_acc'"),
  'negative buckets': (['--config=default', '--config.data.buckets=-1'], 'data.buckets=-1'),
  'missing training file': (
    ['--config=default', '--config.data.task=tagging', '--config.data.train=missing.npz'],
    'missing.npz does not exist',
  ),
  'task without files': (['--config=default', '--config.data.task=tagging'], 'data.train'),
  'missing config file': (
    ['--config=configs/nope.py'],
    "No such file or directory: 'configs/nope.py'",
  ),
  'no config': ([], '--config is required'),
  'stray argument': (['--config=default', 'extra'], "unexpected arguments ['extra']"),
  'unknown flag': (['--config=default', '--epochs=3'], "Unknown command line flag 'epochs'"),
  'evaluate an empty workdir': (['--mode=evaluate'], 'holds no trained run'),
}


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
@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_use_is_one_error_line(tmp_path, case):
  args, fragment = CASES[case]
  workdir = str(tmp_path / 'run')
  out = _run(args, workdir)
  lines = out.stderr.strip().splitlines()
  assert out.returncode == 1, (out.returncode, out.stderr[-2000:])
  assert len(lines) == 1 and lines[0].startswith('Error: '), out.stderr[-2000:]
  assert fragment in lines[0], lines[0]
  assert not os.path.exists(workdir), os.listdir(workdir)


@pytest.mark.subprocess
def test_predict_without_output_on_a_trained_run(tmp_path):
  workdir = str(tmp_path / 'run')
  tiny = ['--config=default', '--config.train.epochs=1', '--config.data.num_train=32']
  assert _run(tiny, workdir).returncode == 0
  out = _run(['--mode=predict'], workdir)
  assert out.returncode == 1
  assert out.stderr.strip() == 'Error: --mode=predict needs --output (a .jsonl or .npz path).'


@pytest.mark.subprocess
def test_help_and_print_config(tmp_path):
  out = subprocess.run(
    [sys.executable, 'train.py', '--help'], cwd=ROOT, capture_output=True, text=True
  )
  assert out.returncode == 0 and 'print_config' in out.stdout and '--workdir' in out.stdout
  out = _run(['--config=default', '--config.model.hidden_size=3', '--print_config'], 'unused')
  assert out.returncode == 0 and '"hidden_size": 3' in out.stdout
  assert not os.path.exists(os.path.join(ROOT, 'unused'))


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
