"""Determinism on CPU: the same seed and config give the same losses, bit for bit.

Across `model.impl` choices the promise is weaker: every recurrence computes the same
function (`BiLSTM.impl`), agreeing to float32 rounding (the parity tolerance of tests/nn),
not bit for bit; so their losses are compared within that tolerance.
"""

import jax
import numpy as np
import pytest

from bilstm_jax import app as train_lib
from bilstm_jax.training import monitor
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


@pytest.mark.slow
def test_impls_agree_to_float32_rounding(default_run, tmp_path):
  assert jax.default_backend() == 'cpu'
  for impl in ('reference', 'fused'):
    losses, _ = _run(str(tmp_path / impl), **{'model.impl': impl})
    np.testing.assert_allclose(losses, default_run[0], rtol=1e-5, err_msg=impl)
