"""Dense output heads with PyTorch's initialisation, so converted models match exactly."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def torch_linear_init(fan_in: int):
  """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): what `torch.nn.Linear` uses for weight and bias."""
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def linear(features: int, fan_in: int, name: str) -> nn.Dense:
  """A float32 `nn.Dense(features)` initialised like `torch.nn.Linear(fan_in, features)`.

  Call it inside a compact method; its parameters are `{name: {kernel, bias}}`.
  """
  init = torch_linear_init(fan_in)
  return nn.Dense(features, kernel_init=init, bias_init=init, dtype=jnp.float32, name=name)
