"""PNG plots: loss curves of a run, and predictions against targets (used by tasks).

matplotlib only (the [plots] extra); without it every plot is skipped with one notice.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from bilstm_jax import faults

try:
  import matplotlib
except ImportError:  # the [plots] extra is not installed: every plot is skipped
  matplotlib = plt = None
else:
  matplotlib.use('Agg')  # files only; never opens a window
  import matplotlib.pyplot as plt

DEFAULT_LOSSES = {'train_loss': 'train loss (mean since the last point)', 'dev_loss': 'dev loss'}


_skipped = []  # the notice is given once per process


def available() -> bool:
  """Whether plots can be drawn (matplotlib is installed); the first False gives one notice."""
  if plt is None and not _skipped:
    _skipped.append(True)
    warnings.warn(
      "bilstm_jax: matplotlib is not installed, so the run's plots are skipped "
      "(pip install 'bilstm_jax[plots]')",
      stacklevel=3,
    )
  return plt is not None


def _save(fig, path: str) -> None:
  """Writes and closes `fig`. A plot that cannot be written (a full disk, no permission)
  is a warning: it must neither fail a finished run nor hide the error that stopped one."""
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path)
  except OSError as e:
    warnings.warn(f'bilstm_jax: the plot {path} was not written: {e}', stacklevel=3)
  finally:
    plt.close(fig)


def loss_curves(history: list[dict], path: str, labels: dict | None = None) -> None:
  """Losses against the step, log scale, from the run's 'eval' rows.

  Args:
    history: dicts with 'step' and the `labels` keys (metrics.jsonl 'eval' events).
    path: the PNG to write.
    labels: {key: legend label} of the curves; default train and dev loss.
  """
  faults.point('plot')
  if not available():
    return
  labels = labels or DEFAULT_LOSSES
  fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
  steps = [h['step'] for h in history]
  for (key, label), style in zip(labels.items(), ('o-', 's--', '^:', 'd-.'), strict=False):
    ax.plot(steps, [h[key] for h in history], style, label=label, markersize=4)
  positive = [h[k] for h in history for k in labels if h[k] > 0]
  if positive and max(positive) / min(positive) > 20:
    ax.set_yscale('log')
  ax.set_xlabel('optimiser step')
  ax.set_ylabel('loss (MSE)')
  ax.set_title('Training and dev loss')
  ax.grid(True, alpha=0.3)
  ax.legend()
  fig.tight_layout()
  _save(fig, path)


def predictions(
  preds: np.ndarray, dataset: dict, path: str, num_seqs: int = 4, output: int = 0
) -> None:
  """One panel per sequence: prediction and target over the real steps.

  Args:
    preds: float[n, time, outputs] model outputs.
    dataset: with 'targets' float[n, time, outputs] and 'lengths' int[n].
    path: the PNG to write.
    num_seqs: how many sequences (the first ones) to draw.
    output: which output unit to draw.
  """
  faults.point('plot')
  if not available():
    return
  num_seqs = min(num_seqs, len(preds))
  fig, axes = plt.subplots(num_seqs, 1, figsize=(7, 1.8 * num_seqs + 0.6), dpi=120, sharex=True)
  axes = np.atleast_1d(axes)
  for i, ax in enumerate(axes):
    n = int(dataset['lengths'][i])
    t = np.arange(n)
    ax.plot(t, dataset['targets'][i, :n, output], 'o-', color='black', label='target')
    ax.plot(t, preds[i, :n, output], 'x--', color='tab:red', label='prediction')
    ax.set_ylabel(f'seq {i}')
    ax.grid(True, alpha=0.3)
  axes[0].legend(loc='upper right', fontsize='small', ncol=2)
  axes[0].set_title('Dev predictions against targets')
  axes[-1].set_xlabel('time step')
  fig.tight_layout()
  _save(fig, path)
