"""Pooling of per-step features over each sequence's valid steps (padding never counts)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

POOLINGS = ('mean', 'max', 'attention')


def valid_mask(lengths: jax.Array, time: int) -> jax.Array:
  """bool[batch, time]: True at each sequence's real steps."""
  return jnp.arange(time)[None, :] < lengths[:, None]


def masked_mean(features: jax.Array, lengths: jax.Array) -> jax.Array:
  """float[batch, dims]: the mean over valid steps; zeros for a length-0 sequence."""
  mask = valid_mask(lengths, features.shape[1])[..., None]
  total = jnp.where(mask, features, 0.0).sum(1)
  return total / jnp.maximum(lengths, 1)[:, None].astype(features.dtype)


def masked_max(features: jax.Array, lengths: jax.Array) -> jax.Array:
  """float[batch, dims]: the maximum over valid steps; zeros for a length-0 sequence."""
  mask = valid_mask(lengths, features.shape[1])[..., None]
  low = jnp.finfo(features.dtype).min
  out = jnp.where(mask, features, low).max(1)
  return jnp.where(lengths[:, None] > 0, out, 0.0)


class AttentionPool(nn.Module):
  """Additive attention over valid steps: softmax(v . tanh(W h_t)) weighted sum of h_t.

  Attributes:
    hidden: size of the scoring layer.
  """

  hidden: int = 64

  @nn.compact
  def __call__(self, features: jax.Array, lengths: jax.Array) -> jax.Array:
    """features: float[batch, time, dims], lengths: int[batch] -> float32[batch, dims]."""
    features = features.astype(jnp.float32)
    scores = nn.Dense(1, use_bias=False, name='score')(
      jnp.tanh(nn.Dense(self.hidden, name='project')(features))
    )[..., 0]
    mask = valid_mask(lengths, features.shape[1])
    scores = jnp.where(mask, scores, -1e30)
    weights = jnp.where(mask, jax.nn.softmax(scores, axis=-1), 0.0)
    return jnp.einsum('bt,btd->bd', weights, features)


def pool(features: jax.Array, lengths: jax.Array, mode: str, name: str = 'pool') -> jax.Array:
  """Pools float[batch, time, dims] over valid steps by `mode` (one of `POOLINGS`).

  'attention' creates an `AttentionPool` submodule: call it inside a compact method.
  """
  if mode == 'mean':
    return masked_mean(features, lengths)
  if mode == 'max':
    return masked_max(features, lengths)
  if mode == 'attention':
    return AttentionPool(name=name)(features, lengths)
  raise ValueError(f'Unknown pooling {mode!r}; known: {POOLINGS}.')
