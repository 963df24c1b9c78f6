"""Multi-horizon forecasting: a `BiLSTM` over the input window and a direct head.

The head predicts all `horizon` future steps at once from the encoder (no step-by-step
decoding, so errors do not compound), as the linear and patch models of the
long-horizon benchmarks do. Two options from those models:

  - Instance normalisation (`norm`): each window is shifted (and optionally scaled) by
    its own statistics before the encoder and shifted back after the head, so that a
    level the training split never saw does not throw the model off (RevIN, Kim et al.
    2022; NLinear's last-value subtraction, Zeng et al. 2023).
  - Channel independence (`channel_independent`): every channel is a separate univariate
    sequence through the same weights (DLinear, PatchTST). The parameters then do not
    depend on the number of channels.

And one from the segment-wise RNN of Lin et al. 2023 (SegRNN): with `segment_len` set,
the window is cut into segments of that many steps, each embedded by a dense layer, and
the LSTM runs over the segments (input_len / segment_len steps instead of input_len).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bilstm_jax.nn.lstm import BiLSTM

NORMS = ('none', 'last', 'mean', 'revin')
HEAD_INPUTS = ('flatten', 'final')

Stats = tuple[jax.Array, jax.Array]


def instance_norm(x: jax.Array, mode: str, eps: float = 1e-5) -> tuple[jax.Array, Stats]:
  """Normalises each window by its own statistics over time.

  Args:
    x: float32[batch, time, channels].
    mode: 'none' (unchanged), 'last' (subtract the last step), 'mean' (subtract the mean
      over time) or 'revin' (subtract the mean and divide by sqrt(var + eps)).
    eps: keeps the division finite for a flat window.

  Returns:
    normed: float32[batch, time, channels].
    (loc, scale): each float32[batch, 1, channels], for `instance_denorm`. They carry no
      gradient (as in RevIN): the model learns the shape of the series, not its level.
  """
  if mode not in NORMS:
    raise ValueError(f'Unknown norm {mode!r}; known: {NORMS}.')
  x = x.astype(jnp.float32)
  loc = jnp.zeros_like(x[:, :1])
  scale = jnp.ones_like(x[:, :1])
  if mode == 'last':
    loc = x[:, -1:]
  elif mode in ('mean', 'revin'):
    loc = x.mean(axis=1, keepdims=True)
  if mode == 'revin':
    scale = jnp.sqrt(x.var(axis=1, keepdims=True) + eps)
  loc, scale = jax.lax.stop_gradient(loc), jax.lax.stop_gradient(scale)
  return (x - loc) / scale, (loc, scale)


def instance_denorm(y: jax.Array, stats: Stats) -> jax.Array:
  """Undoes `instance_norm` on a forecast.

  Args:
    y: float32[batch, horizon, channels], in the normalised scale.
    stats: (loc, scale) from `instance_norm`, each float32[batch, 1, channels].

  Returns:
    float32[batch, horizon, channels] in the scale of the inputs.
  """
  loc, scale = stats
  return y * scale + loc


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
    norm: instance normalisation, one of `NORMS` (see `instance_norm`); 'revin' adds a
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
      y = _denorm(y, stats, affine)
      return y[:, :, jnp.asarray(targets)]
    y = y.reshape(batch, self.horizon, self.out_channels)
    if targets is None:
      return y
    idx = jnp.asarray(targets)
    if affine is not None:
      affine = (affine[0][idx], affine[1][idx])
    return _denorm(y, (stats[0][..., idx], stats[1][..., idx]), affine)


def _denorm(y: jax.Array, stats: Stats, affine: tuple[jax.Array, jax.Array] | None) -> jax.Array:
  if affine is not None:
    weight, bias = affine
    # RevIN's guard: the learned scale may pass near zero during training.
    y = (y - bias) / (weight + 1e-10)
  return instance_denorm(y, stats)
