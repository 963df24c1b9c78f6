"""A trained ensemble, loaded for use: `training.inference.Trained` over stacked members.

Importing this module registers `TrainedEnsemble` for configs with an `ensemble` block
(`inference.register_kind`), so `bilstm_jax.load(workdir)` of an ensemble's run returns
one while `training/` imports nothing from `ensembles/`. `bilstm_jax.load` and the
training app import it.

  members = bilstm_jax.load('runs/ens')
  members.predict('dev')         # the task's records of the combined predictions
  members.predict_arrays('dev')  # the combined arrays, plus '<name>_std' for float ones
  members.evaluate('dev')        # the combined output's metrics, plus 'member_<metric>' lists
"""

from __future__ import annotations

import jax
import numpy as np

from bilstm_jax import tasks
from bilstm_jax.ensembles import ensemble, hparams
from bilstm_jax.training import inference, program


class TrainedEnsemble(inference.Trained):
  """N members whose outputs combine as the task says (`Task.combine`).

  Every leaf of `state` has a leading member axis of size `num_members`.
  """

  @classmethod
  def prepare(cls, task: tasks.Task, config) -> tuple[tasks.Task, int]:
    """The model with dropout layers if any member trained with dropout; the member count.

    Loading checks no range against the config: the members were trained with the ranges
    the run's config holds.
    """
    ranges = hparams.member_ranges(config, check=False)
    return hparams.with_dropout_layers(task, ranges['dropout']), config.ensemble.num_members

  def predict_encoded(self, dataset: dict) -> dict:
    """The combined predictions, and for float ones their spread over members
    ('<name>_std')."""

    def both(state, batch):
      combined, members = ensemble.member_predictions(state, batch, self.task)
      spread = {
        f'{k}_std': v.std(0) for k, v in members.items() if np.issubdtype(v.dtype, np.floating)
      }
      return {**combined, **spread}

    return program.predict_dataset(jax.jit(both), self.state, dataset, self.batch_size, self.task)

  def evaluate(self, data) -> dict:
    """The combined output's metrics on `data`, plus each member's ('member_<metric>')."""
    dataset = self.dataset(data, labelled=True)
    fn = ensemble.make_eval_fn(self.task)
    result = ensemble.evaluate(fn, self.state, dataset, self.batch_size, self.task)
    out = dict(result['ensemble'])
    out.update({f'member_{k}': np.asarray(v).tolist() for k, v in result['member'].items()})
    return out


inference.register_kind('ensemble', TrainedEnsemble)
