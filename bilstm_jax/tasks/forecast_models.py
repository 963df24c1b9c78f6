"""The forecast task's model: a `Forecaster` on windows, optionally on top of a linear
forecast of the same window."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from bilstm_jax.heads.forecast import Forecaster, instance_norm


def moving_average(x: jax.Array, kernel_size: int) -> jax.Array:
  """float32[b, time, c] -> its centred moving average over time, ends padded by
  repeating the first and last rows (as `bilstm_jax.data.ts_baselines.moving_average`)."""
  half = (kernel_size - 1) // 2
  padded = jnp.concatenate([jnp.repeat(x[:, :1], half, 1), x, jnp.repeat(x[:, -1:], half, 1)], 1)
  cumsum = jnp.concatenate([jnp.zeros_like(padded[:, :1]), jnp.cumsum(padded, axis=1)], axis=1)
  return (cumsum[:, kernel_size:] - cumsum[:, :-kernel_size]) / kernel_size


def linear_forecast(x: jax.Array, weights: jax.Array, kernel_size: int) -> jax.Array:
  """The DLinear-style forecast of `ts_baselines.LinearBaseline`, traceable.

  Args:
    x: float32[b, input_len, c].
    weights: float32[groups, 2 * input_len + 1, horizon], groups 1 or c.
    kernel_size: the moving-average width.

  Returns:
    float32[b, horizon, c].
  """
  trend = moving_average(x, kernel_size)
  ones = jnp.ones_like(x[:, :1])
  feats = jnp.swapaxes(jnp.concatenate([trend, x - trend, ones], axis=1), 1, 2)  # [b, c, f]
  weights = jnp.broadcast_to(weights, (x.shape[-1],) + weights.shape[1:])
  return jnp.einsum('bcf,cfh->bhc', feats, weights)


LSTM_SCALE = 0.1  # small, so training starts near the baseline; Adam's steps ignore it


class WindowForecaster(Forecaster):
  """A `Forecaster` taking windows as float32[batch, input_len, channels], optionally on
  top of a linear forecast.

  Attributes:
    linear_skip: if True, a map from input_len to horizon steps, shared by the channels,
      is learned and added to the forecast in the instance-normalised scale (NLinear,
      Zeng et al. 2023). Adds a 'linear_skip' parameter.
    linear_init: if set, () -> float32[groups, 2 * input_len + 1, horizon], the weights
      of a fitted linear baseline (`ts_baselines.fit_linear` on the target channels). The
      forecast is then that baseline's, held fixed, plus the LSTM's, scaled by a learned
      'lstm_scale' that starts at `LSTM_SCALE`: training starts close to the baseline and
      the LSTM learns what it misses (at 0 exactly, neither the scale nor the LSTM would
      get a gradient). Adds the 'linear_base' (frozen) and 'lstm_scale' parameters.
    linear_kernel: the baseline's moving-average width.
    Without either, the parameters are those of `Forecaster`.
  """

  linear_skip: bool = False
  linear_init: Callable | None = None
  linear_kernel: int = 25

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool = True) -> jax.Array:
    x = jnp.asarray(inputs, jnp.float32)
    y = super().__call__(x, deterministic=deterministic)
    idx = list(self._targets(x.shape[-1]) or range(x.shape[-1]))  # static positions
    if self.linear_skip:
      normed, (_, scale) = instance_norm(x, self.norm)
      skip = nn.Dense(self.horizon, dtype=jnp.float32, name='linear_skip')(
        jnp.swapaxes(normed, 1, 2)
      )
      y = y + (jnp.swapaxes(skip, 1, 2) * scale)[..., idx]
    if self.linear_init is not None:
      init = self.linear_init
      weights = jax.lax.stop_gradient(self.param('linear_base', lambda _: jnp.asarray(init())))
      gate = self.param('lstm_scale', nn.initializers.constant(LSTM_SCALE), (), jnp.float32)
      y = linear_forecast(x[..., idx], weights, self.linear_kernel) + gate * y
    return y
