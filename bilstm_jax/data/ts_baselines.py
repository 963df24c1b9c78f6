"""Forecasting baselines without a training loop, and the benchmark metrics. Plain numpy.

  - `persistence`: every future step equals the last observed one.
  - `LinearBaseline`: DLinear (Zeng et al. 2023, "Are Transformers Effective for Time
    Series Forecasting?"): a moving average splits each input window into a trend and a
    remainder, and each part has its own linear map from input_len to horizon steps.
    Fitted here in closed form (ridge regression on the training windows) instead of by
    gradient descent. Without a ridge penalty the two maps together are one linear map of
    the window, so the decomposition matters only through the penalty, which it splits
    between a smooth and a rough part.
  - `forecast_metrics`: MSE and MAE over every window, step and channel.

Arrays are windows as `bilstm_jax.data.timeseries.gather` returns them:
inputs float[n, input_len, channels], targets and predictions float[n, horizon, channels].
"""

from __future__ import annotations

import dataclasses

import numpy as np


def persistence(inputs: np.ndarray, horizon: int) -> np.ndarray:
  """The last-value forecast.

  Args:
    inputs: float[n, input_len, channels].
    horizon: steps to forecast.

  Returns:
    float[n, horizon, channels]: each window's last row, repeated.
  """
  return np.repeat(inputs[:, -1:], horizon, axis=1)


def moving_average(inputs: np.ndarray, kernel_size: int) -> np.ndarray:
  """The trend of each window: a centred moving average over time.

  Both ends are padded by repeating the first and last rows, as DLinear does, so the
  trend has the window's length and follows its level at the edges.

  Args:
    inputs: float[n, input_len, channels].
    kernel_size: the averaging width, odd (DLinear uses 25).

  Returns:
    float64[n, input_len, channels].
  """
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f'kernel_size must be odd and >= 1; got {kernel_size}.')
  half = (kernel_size - 1) // 2
  x = np.asarray(inputs, np.float64)
  padded = np.concatenate([np.repeat(x[:, :1], half, 1), x, np.repeat(x[:, -1:], half, 1)], 1)
  cumsum = np.concatenate([np.zeros_like(padded[:, :1]), np.cumsum(padded, axis=1)], axis=1)
  return (cumsum[:, kernel_size:] - cumsum[:, :-kernel_size]) / kernel_size


def _features(inputs: np.ndarray, kernel_size: int) -> np.ndarray:
  """float64[n, channels, 2 * input_len + 1]: trend, remainder and a constant per channel."""
  trend = moving_average(inputs, kernel_size)
  remainder = np.asarray(inputs, np.float64) - trend
  ones = np.ones(inputs.shape[:1] + (1,) + inputs.shape[2:])
  return np.swapaxes(np.concatenate([trend, remainder, ones], axis=1), 1, 2)


@dataclasses.dataclass(frozen=True)
class LinearBaseline:
  """A fitted DLinear-style forecaster; see `fit_linear`.

  Attributes:
    weights: float64[groups, 2 * input_len + 1, horizon]: rows [0, input_len) map the
      trend, [input_len, 2 * input_len) the remainder, the last row is the bias. groups
      is 1 when the channels share the map, else the number of channels.
    kernel_size: the moving-average width of the decomposition.
  """

  weights: np.ndarray
  kernel_size: int

  def predict(self, inputs: np.ndarray) -> np.ndarray:
    """inputs: float[n, input_len, channels] -> float32[n, horizon, channels]."""
    feats = _features(inputs, self.kernel_size)  # [n, c, f]
    if len(self.weights) not in (1, feats.shape[1]):
      raise ValueError(
        f'The baseline was fitted on {len(self.weights)} channels; inputs have {feats.shape[1]}.'
      )
    y = np.einsum(
      'ncf,cfh->nhc',
      feats,
      np.broadcast_to(self.weights, (feats.shape[1],) + self.weights.shape[1:]),
    )
    return y.astype(np.float32)


def fit_linear(
  inputs: np.ndarray,
  targets: np.ndarray,
  kernel_size: int = 25,
  individual: bool = False,
  ridge: float = 0.0,
) -> LinearBaseline:
  """Fits the DLinear-style baseline in closed form on training windows.

  Args:
    inputs: float[n, input_len, channels], the training windows' inputs.
    targets: float[n, horizon, channels], their targets: the same channels, since every
      channel forecasts itself.
    kernel_size: the moving-average width (odd).
    individual: True fits one map per channel, False one map shared by all channels
      (every channel's window is then one more training example).
    ridge: the L2 penalty on the weights (not the bias), relative to the number of
      examples; 0 gives least squares (the minimum-norm solution if it is not unique).

  Returns:
    The fitted `LinearBaseline`.
  """
  if inputs.shape[0] != targets.shape[0] or inputs.shape[2] != targets.shape[2]:
    raise ValueError(
      f'inputs {inputs.shape} and targets {targets.shape} must have the same windows and channels.'
    )
  feats = _features(inputs, kernel_size)  # [n, c, f]
  ys = np.swapaxes(np.asarray(targets, np.float64), 1, 2)  # [n, c, h]
  if individual:
    groups = [(feats[:, k], ys[:, k]) for k in range(feats.shape[1])]
  else:
    groups = [(feats.reshape(-1, feats.shape[-1]), ys.reshape(-1, ys.shape[-1]))]
  weights = np.stack([_solve(x, y, ridge) for x, y in groups])
  return LinearBaseline(weights=weights, kernel_size=kernel_size)


def _solve(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
  if ridge == 0:
    return np.linalg.lstsq(x, y, rcond=None)[0]
  penalty = ridge * len(x) * np.eye(x.shape[1])
  penalty[-1, -1] = 0.0  # the bias column
  return np.linalg.solve(x.T @ x + penalty, x.T @ y)


def forecast_metrics(predictions: np.ndarray, targets: np.ndarray) -> dict[str, float]:
  """MSE and MAE as the benchmarks report them: the mean over every window, step and
  channel (every window counts once; no batch is dropped).

  Args:
    predictions: float[n, horizon, channels].
    targets: float[n, horizon, channels], in the same (usually normalised) scale.

  Returns:
    {'mse': float, 'mae': float, 'count': number of values averaged}.
  """
  if predictions.shape != targets.shape:
    raise ValueError(f'predictions {predictions.shape} and targets {targets.shape} differ.')
  err = np.asarray(predictions, np.float64) - np.asarray(targets, np.float64)
  return {'mse': float(np.mean(err**2)), 'mae': float(np.mean(np.abs(err))), 'count': err.size}
