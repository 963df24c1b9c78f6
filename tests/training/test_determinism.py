"""Determinism on CPU: the same seed and config give the same losses, bit for bit.

Across `model.impl` choices the promise is weaker: every recurrence computes the same
function (`BiLSTM.impl`), agreeing to float32 rounding (the parity tolerance of tests/nn),
not bit for bit; so their losses are compared within that tolerance.
"""

import jax
import numpy as np
import pytest

from bilstm_jax import app as train_lib
from bilstm_jax.training import loop, monitor
from tests.utils import tiny_config

# Two epochs; two layers with dropout between them, so the dropout rng (folded with the
# step) is part of what must repeat.
SHORT = {'train.epochs': 2, 'model.num_layers': 2, 'model.dropout': 0.25}
LOSSES = ('train_loss', 'dev_loss', 'dev_mae')


def _run(workdir, **overrides):
  """The eval rows' losses ([epoch][loss]) and the summary of a tiny run in `workdir`."""
  summary = train_lib.train_and_evaluate(tiny_config(**{**SHORT, **overrides}), workdir)
  rows = [e for e in monitor.read_events(f'{workdir}/metrics.jsonl') if e['event'] == 'eval']
  assert len(rows) == 2 and summary['steps'] == 8
  return [[row[k] for k in LOSSES] for row in rows], summary


@pytest.fixture(scope='module')
def default_run(tmp_path_factory):
  """The run with the default impl ('auto': the CPU kernel where it builds)."""
  return _run(str(tmp_path_factory.mktemp('auto')))


@pytest.mark.slow
def test_same_seed_and_config_give_bit_identical_losses(default_run, tmp_path):
  losses, summary = _run(str(tmp_path))
  assert losses == default_run[0]  # floats through JSON: equal means bit for bit
  assert summary['final_dev_loss'] == default_run[1]['final_dev_loss']
  assert losses[0] != losses[1]  # it trains: the equality is not of constants


def _losses_by_call(workdir, impl):
  """Each compiled call's mean train loss, then the dev metrics, with `model.impl=impl`
  (the program alone: no checkpoints, export or plots)."""
  cfg = tiny_config(**{'train.epochs': 2, 'model.impl': impl})  # one layer: compiles faster
  _, prog, _, _ = train_lib.prepare(cfg, workdir)
  state, rng = prog.init()
  losses = []
  for _, lo, hi, batches in loop.chunks_from(prog, loop.Progress()):
    state, sums = prog.train_chunk(state, batches[lo:hi], rng)
    losses.append(float(sums['loss_sum']) / float(sums['weight']))
  return losses + list(prog.evaluate(state).values())


@pytest.mark.slow
def test_impls_agree_to_float32_rounding(tmp_path):
  assert jax.default_backend() == 'cpu'
  default = _losses_by_call(str(tmp_path), '')  # the CPU kernel where it builds
  assert len(default) == 4 + 2 and len(set(default[:4])) == 4
  for impl in ('reference', 'fused'):
    np.testing.assert_allclose(_losses_by_call(str(tmp_path), impl), default, rtol=1e-5)
