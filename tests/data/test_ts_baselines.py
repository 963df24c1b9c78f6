"""Closed-form forecasting baselines and metrics (bilstm_jax.data.ts_baselines)."""

import numpy as np
import pytest

from bilstm_jax.data import timeseries as ts
from bilstm_jax.data import ts_baselines as tb


def windows_of(series, input_len, horizon):
  """series: float[rows, channels] -> (inputs, targets) of every stride-1 window."""
  windows = ts.make_windows((0, len(series)), input_len, horizon)
  channels = np.arange(series.shape[1])
  return ts.gather(series, windows, channels, channels)


def test_persistence_repeats_the_last_row_and_is_exact_on_a_constant():
  inputs = np.arange(12.0, dtype=np.float32).reshape(2, 3, 2)
  np.testing.assert_array_equal(tb.persistence(inputs, 2), [[[4, 5]] * 2, [[10, 11]] * 2])
  series = np.full((20, 2), [3.5, -1.0])
  inputs, targets = windows_of(series, 5, 4)
  metrics = tb.forecast_metrics(tb.persistence(inputs, 4), targets)
  assert metrics['mse'] == 0 and metrics['mae'] == 0


def test_moving_average_pads_with_the_edge_rows():
  x = np.array([0.0, 3.0, 6.0, 30.0])[None, :, None]
  want = [(0 + 0 + 3) / 3, (0 + 3 + 6) / 3, (3 + 6 + 30) / 3, (6 + 30 + 30) / 3]
  np.testing.assert_allclose(tb.moving_average(x, 3)[0, :, 0], want)
  np.testing.assert_array_equal(tb.moving_average(x, 1), x)
  with pytest.raises(ValueError, match='odd'):
    tb.moving_average(x, 4)


@pytest.mark.parametrize('individual', [False, True])
def test_linear_baseline_recovers_an_ar_series(individual):
  # Sums of sines obey a linear recurrence, so every future step is a fixed linear map of
  # the window: least squares must find one that forecasts exactly.
  t = np.arange(200.0)
  series = np.stack([np.sin(0.3 * t) + 0.5 * np.cos(0.11 * t), 2 * np.sin(0.05 * t + 1)], 1)
  inputs, targets = windows_of(series, input_len=12, horizon=5)
  train = slice(0, 120)
  model = tb.fit_linear(inputs[train], targets[train], kernel_size=5, individual=individual)
  assert model.weights.shape == (2 if individual else 1, 2 * 12 + 1, 5)
  predictions = model.predict(inputs[120:])
  assert predictions.shape == targets[120:].shape
  assert tb.forecast_metrics(predictions, targets[120:])['mse'] < 1e-8


def test_individual_maps_differ_per_channel():
  # Channel 0 continues its trend, channel 1 reverts to zero: a shared map cannot do both.
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(200, 6, 2))
  targets = np.stack([inputs[:, -1, 0] * 2, np.zeros(200)], -1)[:, None, :]
  shared = tb.fit_linear(inputs, targets, kernel_size=3)
  individual = tb.fit_linear(inputs, targets, kernel_size=3, individual=True)
  assert tb.forecast_metrics(individual.predict(inputs), targets)['mse'] < 1e-12
  assert tb.forecast_metrics(shared.predict(inputs), targets)['mse'] > 0.1


def test_ridge_shrinks_weights_but_not_the_bias():
  rng = np.random.default_rng(1)
  inputs = rng.normal(size=(100, 4, 1))
  targets = 7.0 + 0.1 * inputs[:, -1:]  # mostly a constant
  model = tb.fit_linear(inputs, targets, kernel_size=1, ridge=1e3)
  assert np.abs(model.weights[0, :-1]).max() < 1e-3
  np.testing.assert_allclose(model.weights[0, -1], 7.0, atol=0.05)


def test_forecast_metrics_are_means_over_every_value():
  predictions = np.zeros((2, 3, 1))
  targets = np.array([1.0, -1, 2, 0, 0, -2]).reshape(2, 3, 1)
  assert tb.forecast_metrics(predictions, targets) == {'mse': 10 / 6, 'mae': 1.0, 'count': 6}
  with pytest.raises(ValueError, match='differ'):
    tb.forecast_metrics(predictions, targets[:1])
