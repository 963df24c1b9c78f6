"""A structural sweep: every (hidden size, layers) pair as its own population of members.

The ensemble config (`configs/ensemble.py`: learning rates log-uniform in [1e-4, 0.3])
with fewer members per shape, plus a `sweep` block of `model` fields to vary. Shapes
cannot share one compiled program, so each combination is one population; one results
table (`workdir/results.json`) covers them all, and rerunning resumes an interrupted sweep.

  python train.py --config configs/sweep.py --workdir /tmp/sweep
  # smoke (seconds):
  python train.py --config configs/sweep.py --workdir /tmp/sweep \
      --config.train.epochs=1 --config.ensemble.num_members=2 --config.sweep.num_layers='(1,)'
"""

import ml_collections

from bilstm_jax.configs import ensemble


def get_config() -> ml_collections.ConfigDict:
  config = ensemble.get_config()
  config.ensemble.num_members = 8  # per shape; the learning rates are the same in every shape

  config.sweep = ml_collections.ConfigDict()
  # Values of `model` fields; every combination is one compiled population.
  config.sweep.hidden_size = (4, 8, 16)
  config.sweep.num_layers = (1, 2)
  return config
