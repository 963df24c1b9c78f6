"""Several processes: train.py on two CPU processes (gloo collectives) against one process.

The processes talk over 127.0.0.1 only, on a free port; every subprocess has a bounded
timeout, so a hang fails the test instead of hanging the suite.
"""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from bilstm_jax import app as train_lib
from bilstm_jax.parallel import distributed
from configs import default
from configs import ensemble as ensemble_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = 6  # a few optimiser steps of the default config (global batch 16)
TIMEOUT_S = 240


def test_initialize_only_when_asked(monkeypatch):
  monkeypatch.delenv('JAX_COORDINATOR_ADDRESS', raising=False)
  config = default.get_config()
  assert not distributed.wants_initialize()
  assert not train_lib.initialize_distributed(config)  # the default config stays one process
  assert distributed.wants_initialize(coordinator='127.0.0.1:1234')
  assert distributed.wants_initialize(num_processes=2)
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', '127.0.0.1:1234')
  assert distributed.wants_initialize()


def test_muted_swallows_calls_and_keeps_attributes():
  mon = distributed.Muted(path='/x/metrics.jsonl')
  assert mon.path == '/x/metrics.jsonl'
  assert mon.event('eval', step=1) is None and mon.close() is None


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def _train_cmd(workdir: str, *flags: str, config: str = 'default') -> list[str]:
  return [
    sys.executable,
    os.path.join(ROOT, 'train.py'),
    '--config',
    os.path.join(ROOT, 'configs', f'{config}.py'),
    '--workdir',
    workdir,
    f'--config.train.num_steps={STEPS}',
    *flags,
  ]


def _two_process_flags(coordinator: str, i: int) -> list[str]:
  return [
    f'--config.distributed.coordinator={coordinator}',
    '--config.distributed.num_processes=2',
    f'--config.distributed.process_id={i}',
    '--config.distributed.timeout_s=60',
  ]


def _env() -> dict:
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS='cpu')
  env.pop('XLA_FLAGS', None)  # one device per process
  env.pop('JAX_COORDINATOR_ADDRESS', None)
  return env


def _run_all(cmds: list[list[str]]) -> list[str]:
  """Runs the commands at once; kills them all if any hangs; returns their outputs."""
  procs = [
    subprocess.Popen(
      cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env(), cwd=ROOT
    )
    for cmd in cmds
  ]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=TIMEOUT_S)[0])
  except subprocess.TimeoutExpired:
    for p in procs:
      p.kill()
    pytest.fail(f'A training process did not finish within {TIMEOUT_S} s.')
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, out in zip(procs, outputs, strict=True):
    assert p.returncode == 0, out[-4000:]
  return outputs


def _restore(workdir: str):
  """The newest checkpoint of `workdir`, restored in this (single-device) process."""
  cfg = default.get_config()
  cfg.train.num_steps = STEPS
  step, state, _, meta = train_lib.load_latest(cfg, workdir)
  return step, state, meta


@pytest.mark.subprocess
@pytest.mark.parametrize('axis', ['data', 'model'])
def test_two_processes_match_one_and_their_checkpoint_restores(tmp_path, axis):
  """axis: what the two processes split, the batch or the parameters (then gathered for
  the export by both processes together)."""
  two, one = str(tmp_path / 'two'), str(tmp_path / 'one')
  coordinator = f'127.0.0.1:{_free_port()}'
  mesh = {'data': ['--config.mesh.data=2'], 'model': ['--config.mesh.model=2']}[axis]
  outs = _run_all([_train_cmd(two, *mesh, *_two_process_flags(coordinator, i)) for i in range(2)])
  _run_all([_train_cmd(one)])

  with open(os.path.join(two, 'summary.json')) as f:
    summary2 = json.load(f)
  with open(os.path.join(one, 'summary.json')) as f:
    summary1 = json.load(f)
  assert summary2['num_processes'] == 2 and summary2['num_devices'] == 2
  assert summary2['mesh'] == {'member': 1, 'data': 1, 'model': 1, axis: 2}
  assert summary1['num_processes'] == 1 and summary1['mesh']['data'] == 1
  for key in ('final_train_loss', 'final_dev_loss'):
    np.testing.assert_allclose(summary2[key], summary1[key], rtol=1e-5)

  # Exactly one process wrote the shared files and printed the results.
  with open(os.path.join(two, 'metrics.jsonl')) as f:
    events = [json.loads(line)['event'] for line in f]
  assert events.count('start') == 1 and events.count('end') == 1, events
  assert ('Final MSE' in outs[0]) and ('Final MSE' not in outs[1])

  # The two-process checkpoint restores here, in one process, and holds the parameters
  # (and optimiser state) of the one-process run.
  step2, state2, meta2 = _restore(two)
  step1, state1, _ = _restore(one)
  assert step2 == step1 == STEPS and int(state2.step) == STEPS
  assert meta2['progress']['step'] == STEPS
  _assert_trees_close(state2.params, state1.params, rtol=0, atol=1e-5)
  _assert_trees_close(state2.opt_state, state1.opt_state, rtol=1e-5, atol=1e-7)


def _assert_trees_close(a, b, **tolerances):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerances)


# An ensemble whose members are split over the two processes (mesh member=2): each holds
# two members, so every per-member value the loop logs, saves or prints is gathered.
ENSEMBLE_FLAGS = (
  '--config.ensemble.num_members=4',
  '--config.ensemble.data_mode=bootstrap',
  '--config.train.num_steps=30',  # two epochs, each ending with an evaluation and a save
  '--config.train.log_every_epochs=1',
  # Distinct members, but rates low enough that float32 rounding (the kernel runs two
  # members per call there, four here) does not grow over 30 Adam steps.
  '--config.ensemble.learning_rate=(0.001, 0.01)',
)


@pytest.mark.subprocess
def test_ensemble_members_split_over_two_processes_match_one(tmp_path):
  two, one = str(tmp_path / 'two'), str(tmp_path / 'one')
  coordinator = f'127.0.0.1:{_free_port()}'
  flags = [*ENSEMBLE_FLAGS, '--config.mesh.member=2']
  outs = _run_all(
    [
      _train_cmd(two, *flags, *_two_process_flags(coordinator, i), config='ensemble')
      for i in range(2)
    ]
  )
  _run_all([_train_cmd(one, *ENSEMBLE_FLAGS, config='ensemble')])
  summaries = []
  for workdir in (two, one):
    with open(os.path.join(workdir, 'summary.json')) as f:
      summaries.append(json.load(f))
  summary2, summary1 = summaries
  assert summary2['num_processes'] == 2 and summary2['mesh']['member'] == 2
  assert len(summary2['history']) == 2  # the mid-run evaluation and the last one
  for key in ('train_loss', 'dev_loss'):
    np.testing.assert_allclose(
      [m[key] for m in summary2['members']], [m[key] for m in summary1['members']], rtol=1e-5
    )
  assert 'Best member' in outs[0] and 'Best member' not in outs[1]

  # The two-process checkpoint (each process wrote its own members) restores in one.
  cfg = ensemble_config.get_config()
  cfg.ensemble.num_members, cfg.ensemble.data_mode, cfg.train.num_steps = 4, 'bootstrap', 30
  cfg.ensemble.learning_rate = (0.001, 0.01)
  step2, state2, _, _ = train_lib.load_latest(cfg, two)
  step1, state1, _, _ = train_lib.load_latest(cfg, one)
  assert step2 == step1 == 30
  _assert_trees_close(state2.params, state1.params, rtol=0, atol=1e-5)

  # And train.py --mode=evaluate reads it in one process (orbax would otherwise restore
  # onto the two processes' devices it was written from).
  _run_all(
    [[*_train_cmd(w, *ENSEMBLE_FLAGS, config='ensemble'), '--mode=evaluate'] for w in (two, one)]
  )
  evals = []
  for workdir in (two, one):
    with open(os.path.join(workdir, 'evaluate.json')) as f:
      evals.append(json.load(f))
  np.testing.assert_allclose(evals[0]['member_loss'], evals[1]['member_loss'], rtol=1e-5)
