"""Task models: a `BiLSTM` body plus a head. Modules read attributes, never a ConfigDict."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.nn.lstm import BiLSTM


def torch_linear_init(fan_in: int):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what `torch.nn.Linear` uses for weight and bias."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class BiLSTMRegressor(nn.Module):
  """The tutorial's model: a (Bi)LSTM and a per-step linear head.

  Attributes:
    hidden_size, num_layers, dropout, bidirectional, dtype, impl: passed to `BiLSTM`.
    output_size: outputs per time step.
  """

  hidden_size: int
  output_size: int = 1
  num_layers: int = 1
  dropout: float = 0.0
  bidirectional: bool = True
  dtype: Any = jnp.float32
  impl: str | None = None

  @nn.compact
  def __call__(
    self, inputs: jax.Array, lengths: jax.Array | None = None, deterministic: bool = True
  ) -> jax.Array:
    """inputs: float[batch, time, features] -> predictions float32[batch, time, output_size].

    Predictions at padded steps are the head's bias; losses mask them out.
    """
    kwargs = {} if self.impl is None else {'impl': self.impl}
    features, _ = BiLSTM(
      self.hidden_size,
      num_layers=self.num_layers,
      dropout=self.dropout,
      bidirectional=self.bidirectional,
      dtype=self.dtype,
      name='lstm',
      **kwargs,
    )(inputs, lengths, deterministic=deterministic)
    fan_in = features.shape[-1]
    return nn.Dense(
      self.output_size,
      kernel_init=torch_linear_init(fan_in),
      bias_init=torch_linear_init(fan_in),
      dtype=jnp.float32,
      name='head',
    )(features.astype(jnp.float32))
