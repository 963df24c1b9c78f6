"""Losses as (sum, weight) pairs, so means over several batches are exact."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def step_mask(lengths: jax.Array, time: int) -> jax.Array:
  """bool[batch, time]: True at real steps."""
  return jnp.arange(time)[None, :] < lengths[:, None]


def masked_mse(predictions: jax.Array, batch: dict) -> tuple[jax.Array, jax.Array]:
  """Squared error summed over real steps and output units, and how many terms it holds.

  Args:
    predictions: float[batch, time, outputs].
    batch: with 'targets' float[batch, time, outputs] and 'lengths' int[batch].

  Returns:
    (sum of squared errors, number of terms). sum / number is `torch.nn.MSELoss()` when
    every sequence is full length.
  """
  mask = step_mask(batch['lengths'], predictions.shape[1])[..., None]
  err = jnp.where(mask, (predictions - batch['targets']) ** 2, 0.0)
  return err.sum(), mask.sum() * jnp.asarray(predictions.shape[-1], jnp.float32)
