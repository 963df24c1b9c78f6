"""Regression: float targets at every step, masked MSE (the tutorial's task).

Data: `inputs` and `targets` float[n, time, outputs] (see `bilstm_jax.data.files`), or a
synthetic task (`bilstm_jax.data.synthetic`) generated from a seed.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import numpy as np

from bilstm_jax import plots
from bilstm_jax.data import synthetic
from bilstm_jax.models import BiLSTMRegressor, EncoderConfig
from bilstm_jax.tasks import base
from bilstm_jax.tasks.objectives import StepTargets


def target_variance(dataset: dict) -> float:
  """Variance of the targets over real steps: the MSE of predicting their mean."""
  mask = np.arange(dataset['targets'].shape[1])[None, :] < dataset['lengths'][:, None]
  return float(dataset['targets'][mask].var())


@dataclasses.dataclass(frozen=True)
class RegressionTask(base.Task):
  """Per-step regression from .npz/.jsonl files or a generator: a source + `StepTargets`.

  Attributes:
    synthetic: keyword arguments of `bilstm_jax.data.synthetic.generate` (without the
      split) for a generated task; None to read `sources`.
  """

  name: ClassVar[str] = 'regression'
  objective: ClassVar[StepTargets] = StepTargets()

  synthetic: dict | None = None

  @classmethod
  def from_config(cls, config) -> RegressionTask:
    """The task a config names: its files, or a synthetic generator ('seed_noise', ...)."""
    data = config.data
    gen = None
    if data.task in synthetic.GENERATORS:
      gen = {
        'name': data.task,
        'num': {'train': data.num_train, 'dev': data.num_dev},
        'seq_len': data.seq_len,
        'input_size': data.input_size,
        'output_size': data.output_size,
        'seed': data.seed,
        'min_length': data.get('min_length'),
      }
    sources = {s: data.get(s) or '' for s in base.SPLITS}
    return cls(sources=sources, model=EncoderConfig.from_config(config.model), synthetic=gen)

  def read(self, source: str, labelled: bool = True) -> dict:
    """As `Task.read`; a synthetic task generates its train and dev splits instead."""
    if self.synthetic is not None and source in ('train', 'dev') and not self.sources.get(source):
      gen = dict(self.synthetic)
      num = gen.pop('num')[source]
      dataset = synthetic.generate(split=source, num=num, **gen)
      self.check(dataset, f'the synthetic {source} split')
      return dataset
    return super().read(source, labelled)

  def make_model(self):
    """A `BiLSTMRegressor` with the fitted output size."""
    return BiLSTMRegressor.from_config(
      self.model, output_size=self.sizes['output_size'], vocab_size=self.sizes.get('vocab_size')
    )

  def report(self, predict, dev_set, dev_metrics, print_fn, plots_dir):
    """The dev MSE against the targets' variance; predictions printed and plotted."""
    variance = target_variance(dev_set)
    preds = predict(dev_set)['predictions']
    if plots_dir is not None:
      plots.predictions(preds, dev_set, os.path.join(plots_dir, 'predictions.png'))
    print_fn('Predictions vs targets (dev, first output unit):')
    for s in range(min(2, len(preds))):
      steps = min(5, int(dev_set['lengths'][s]))
      pairs = '  '.join(
        f'{preds[s, t, 0]:+.3f}/{dev_set["targets"][s, t, 0]:+.3f}' for t in range(steps)
      )
      print_fn(f'  seq {s}: {pairs}')
    return {
      'dev_target_variance': variance,
      'dev_loss_over_variance': dev_metrics['loss'] / variance if variance > 0 else None,
    }

  def final_line(self, train: dict, dev: dict, extra: dict) -> str:
    """The final train and dev MSE, and the dev MSE over the dev targets' variance."""
    variance = extra.get('dev_target_variance') or float('nan')
    return (
      f'Final MSE: train {train["loss"]:.6f}  dev {dev["loss"]:.6f}  '
      f'(dev target variance {variance:.4f}; ratio {dev["loss"] / variance:.4f})'
    )
