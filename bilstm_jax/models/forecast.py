"""Multi-horizon forecasting models: a `BiLSTM` over the input window and a direct head.

The head predicts all `horizon` future steps at once from the encoder (no step-by-step
decoding, so errors do not compound), as the linear and patch models of the
long-horizon benchmarks do. Two options from those models:

  - Instance normalisation (`norm`): each window is shifted (and optionally scaled) by
    its own statistics before the encoder and shifted back after the head, so that a
    level the training split never saw does not throw the model off (RevIN, Kim et al.
    2022; NLinear's last-value subtraction, Zeng et al. 2023; see
    `bilstm_jax.heads.forecast`).
  - Channel independence (`channel_independent`): every channel is a separate univariate
    sequence through the same weights (DLinear, PatchTST). The parameters then do not
    depend on the number of channels.

And one from the segment-wise RNN of Lin et al. 2023 (SegRNN): with `segment_len` set,
the window is cut into segments of that many steps, each embedded by a dense layer, and
the LSTM runs over the segments (input_len / segment_len steps instead of input_len).

  ForecastConfig    the options from a run config's `model` block
  Forecaster        windows float32[batch, input_len, channels] -> the forecast
  WindowForecaster  the forecast task's model: the same windows, optionally on top of a
                    linear forecast of the same window
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Self

import flax.linen as nn
import jax
import jax.numpy as jnp

from bilstm_jax.heads.forecast import instance_denorm, instance_norm
from bilstm_jax.models.config import ModelConfig
from bilstm_jax.nn.lstm import BiLSTM

HEAD_INPUTS = ('flatten', 'final')


@dataclasses.dataclass(frozen=True)
class ForecastConfig(ModelConfig):
  """The forecasters' options, from a run config's `model` block (`from_config`).

  The fields are `Forecaster`'s attributes of the same names (see there) and
  `WindowForecaster`'s `linear_skip`; `linear_base` asks the task for the fitted linear
  baseline, which it passes as the model's `linear_init`. The sizes (horizon, channels)
  come from the task.
  """

  hidden_size: int
  num_layers: int = 1
  dropout: float = 0.0
  bidirectional: bool = True
  channel_independent: bool = False
  norm: str = 'none'
  head_input: str = 'flatten'
  segment_len: int = 0
  linear_skip: bool = False
  linear_base: bool = False
  impl: str | None = None


class Forecaster(nn.Module):
  """A (Bi)LSTM encoder and a direct multi-horizon linear head.

  Attributes:
    hidden_size, num_layers, dropout, bidirectional, impl: passed to `BiLSTM` (impl None
      keeps BiLSTM's default). `dropout` also applies to the head's input.
    horizon: steps to forecast.
    out_channels: channels to forecast.
    channel_independent: if True, each input channel runs alone through the shared
      encoder and head, which forecast that channel; the outputs are the channels named
      by `target_index`.
    norm: instance normalisation, one of `heads.forecast.NORMS` (`instance_norm`); 'revin' adds a
      learned per-channel affine map after normalising, undone before denormalising.
    head_input: 'flatten' (the head reads the encoder's outputs at every step,
      time * dirs * hidden features) or 'final' (only the final hidden states of the
      last layer, dirs * hidden features).
    target_index: the input channels the outputs are, needed when out_channels differs
      from the number of input channels and the outputs are denormalised or channel
      independent (e.g. (6,) to forecast OT from all 7 ETT columns); None means
      outputs and inputs are the same channels.
    segment_len: 0 (the LSTM reads every step) or the length of the segments the window
      is cut into; each segment goes through Dense(hidden_size) and a ReLU, and the LSTM
      reads one segment a step. The window length must be a multiple of it.

  Example:
    >>> model = Forecaster(hidden_size=8, horizon=4, out_channels=3, norm='last')
    >>> x = jnp.ones((2, 12, 3))
    >>> params = model.init(jax.random.key(0), x)
    >>> model.apply(params, x).shape
    (2, 4, 3)
  """

  hidden_size: int
  horizon: int
  out_channels: int
  num_layers: int = 1
  dropout: float = 0.0
  bidirectional: bool = True
  channel_independent: bool = False
  norm: str = 'none'
  head_input: str = 'flatten'
  target_index: tuple[int, ...] | None = None
  segment_len: int = 0
  impl: str | None = None

  @classmethod
  def from_config(cls, config: ForecastConfig, **sizes) -> Self:
    """The model from its typed options and what the task fitted, in one step.

    Args:
      config: the options (`ForecastConfig.from_config(run_config.model)`).
      **sizes: the rest of the attributes: `horizon`, `out_channels`, `target_index`
        (and a `WindowForecaster`'s `linear_init` and `linear_kernel`).
    """
    return cls(
      hidden_size=config.hidden_size,
      num_layers=config.num_layers,
      dropout=config.dropout,
      bidirectional=config.bidirectional,
      channel_independent=config.channel_independent,
      norm=config.norm,
      head_input=config.head_input,
      segment_len=config.segment_len,
      impl=config.impl,
      **sizes,
    )

  def _targets(self, channels: int) -> tuple[int, ...] | None:
    """Positions of the output channels among the inputs, or None if not needed."""
    if self.target_index is not None:
      if len(self.target_index) != self.out_channels:
        raise ValueError(
          f'target_index {self.target_index} names {len(self.target_index)} channels; '
          f'out_channels is {self.out_channels}.'
        )
      if not all(0 <= i < channels for i in self.target_index):
        raise ValueError(f'target_index {self.target_index} is out of range for {channels}.')
      return tuple(self.target_index)
    if self.out_channels == channels:
      return tuple(range(channels))
    if self.channel_independent or self.norm != 'none':
      raise ValueError(
        f'out_channels ({self.out_channels}) differs from the input channels ({channels}); '
        f'set target_index to say which inputs they are.'
      )
    return None

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool = True) -> jax.Array:
    """Forecasts the next `horizon` steps of each window.

    Args:
      inputs: float32[batch, input_len, channels].
      deterministic: if False, applies dropout (needs a 'dropout' rng).

    Returns:
      float32[batch, horizon, out_channels].
    """
    if self.head_input not in HEAD_INPUTS:
      raise ValueError(f'Unknown head_input {self.head_input!r}; known: {HEAD_INPUTS}.')
    batch, time, channels = inputs.shape
    targets = self._targets(channels)
    x, stats = instance_norm(inputs, self.norm)
    affine = None
    if self.norm == 'revin':
      weight = self.param('revin_weight', nn.initializers.ones, (channels,), jnp.float32)
      bias = self.param('revin_bias', nn.initializers.zeros, (channels,), jnp.float32)
      x = x * weight + bias
      affine = (weight, bias)
    if self.channel_independent:
      x = jnp.swapaxes(x, 1, 2).reshape(batch * channels, time, 1)
    if self.segment_len:
      if self.segment_len < 0 or time % self.segment_len:
        raise ValueError(
          f'segment_len {self.segment_len} does not divide the window length {time}.'
        )
      x = x.reshape(x.shape[0], time // self.segment_len, self.segment_len * x.shape[-1])
      x = nn.relu(nn.Dense(self.hidden_size, dtype=jnp.float32, name='segment_embed')(x))

    kwargs = {} if self.impl is None else {'impl': self.impl}
    features, (h_n, _) = BiLSTM(
      self.hidden_size,
      num_layers=self.num_layers,
      dropout=self.dropout,
      bidirectional=self.bidirectional,
      name='lstm',
      **kwargs,
    )(x, deterministic=deterministic)
    if self.head_input == 'flatten':
      z = features.reshape(features.shape[0], -1)
    else:
      dirs = 2 if self.bidirectional else 1
      z = jnp.swapaxes(h_n[-dirs:], 0, 1).reshape(h_n.shape[1], -1)  # last layer's states
    z = nn.Dropout(self.dropout)(z.astype(jnp.float32), deterministic=deterministic)
    per_sequence = 1 if self.channel_independent else self.out_channels
    y = nn.Dense(self.horizon * per_sequence, dtype=jnp.float32, name='head')(z)

    if self.channel_independent:
      # Every channel forecast itself; denormalise all, then keep the targets.
      y = jnp.swapaxes(y.reshape(batch, channels, self.horizon), 1, 2)
      y = instance_denorm(y, stats, affine)
      return y[:, :, jnp.asarray(targets)]
    y = y.reshape(batch, self.horizon, self.out_channels)
    if targets is None:
      return y
    idx = jnp.asarray(targets)
    if affine is not None:
      affine = (affine[0][idx], affine[1][idx])
    return instance_denorm(y, (stats[0][..., idx], stats[1][..., idx]), affine)


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
  top of a linear forecast. Without `linear_skip` or `linear_init`, the parameters are
  those of `Forecaster`.

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
  """

  linear_skip: bool = False
  linear_init: Callable | None = None
  linear_kernel: int = 25

  @classmethod
  def from_config(cls, config: ForecastConfig, **sizes) -> Self:
    """As `Forecaster.from_config`, with `config.linear_skip`; the task passes
    `linear_init` when `config.linear_base` asks for the fitted baseline."""
    return super().from_config(config, linear_skip=config.linear_skip, **sizes)

  @nn.compact
  def __call__(self, inputs: jax.Array, deterministic: bool = True) -> jax.Array:
    """inputs float32[batch, input_len, channels] -> float32[batch, horizon, out_channels]."""
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
