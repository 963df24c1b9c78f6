"""`MaskedBatchNorm`: batch normalisation of padded sequences over their valid steps only.

Flax's `nn.BatchNorm` averages over every position of the batch, so the zeros at padded
steps pull the mean towards zero and shrink the variance by a factor that depends on how
much of the batch is padding: the statistics, and with them every valid output, change when
the same sentences are padded to another length. Here the mean and variance are taken over
the positions where `mask` is true, and padded outputs are zero, as the layer's are.

Running averages live in the 'batch_stats' collection: a training step applies the module
with `mutable=['batch_stats']` and `use_running_average=False`; evaluation uses them.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class MaskedBatchNorm(nn.Module):
  """Normalises features with statistics over the valid (unmasked) steps of the batch.

  Attributes:
    momentum: running average decay: `ra = momentum * ra + (1 - momentum) * batch_stat`.
    epsilon: added to the variance.
    use_scale, use_bias: learn a per-feature scale (init 1) and bias (init 0).

  Under `jax.jit` with a batch sharded over devices the sums are global, so every device
  uses the same statistics; under `jax.vmap` over ensemble members each member keeps its own.
  """

  momentum: float = 0.99
  epsilon: float = 1e-5
  use_scale: bool = True
  use_bias: bool = True

  @nn.compact
  def __call__(self, x: jax.Array, mask: jax.Array, use_running_average: bool) -> jax.Array:
    """Normalised features.

    Args:
      x: float[batch, time, features].
      mask: bool[batch, time], true at valid steps.
      use_running_average: True at evaluation (the running statistics), False in training
        (this batch's statistics, and the running ones updated unless initialising).

    Returns:
      float32[batch, time, features], zero where `mask` is false.
    """
    features = x.shape[-1]
    x = x.astype(jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', jnp.zeros, (features,), jnp.float32)
    ra_var = self.variable('batch_stats', 'var', jnp.ones, (features,), jnp.float32)
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      weight = mask[..., None].astype(jnp.float32)
      total = weight.sum((0, 1))
      count = jnp.maximum(total, 1.0)
      mean = (x * weight).sum((0, 1)) / count
      var = (jnp.square(x - mean) * weight).sum((0, 1)) / count  # biased, as in training
      if not self.is_initializing():
        m, seen = self.momentum, total > 0  # an all-padding batch leaves them as they are
        new_mean = m * ra_mean.value + (1 - m) * jax.lax.stop_gradient(mean)
        new_var = m * ra_var.value + (1 - m) * jax.lax.stop_gradient(var)
        ra_mean.value = jnp.where(seen, new_mean, ra_mean.value)
        ra_var.value = jnp.where(seen, new_var, ra_var.value)
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon)
    if self.use_scale:
      y = y * self.param('scale', nn.initializers.ones, (features,), jnp.float32)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    return jnp.where(mask[..., None], y, 0.0)
