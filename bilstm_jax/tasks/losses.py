"""Losses and metrics as (sum, weight) pairs, masked by lengths, so means over several
batches are exact and padded steps or padding examples weigh nothing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def step_mask(lengths: jax.Array, time: int) -> jax.Array:
  """bool[batch, time]: True at real steps."""
  return jnp.arange(time)[None, :] < lengths[:, None]


def masked_mse(predictions: jax.Array, targets: jax.Array, lengths: jax.Array):
  """Squared error summed over real steps and output units, and how many terms it holds.

  Args:
    predictions, targets: float[batch, time, outputs].
    lengths: int[batch].

  Returns:
    (sum of squared errors, number of terms). sum / number is `torch.nn.MSELoss()` when
    every sequence is full length.
  """
  mask = step_mask(lengths, predictions.shape[1])[..., None]
  err = jnp.where(mask, (predictions - targets) ** 2, 0.0)
  return err.sum(), mask.sum() * jnp.asarray(predictions.shape[-1], jnp.float32)


def masked_abs_error(predictions: jax.Array, targets: jax.Array, lengths: jax.Array):
  """Absolute error summed over real steps and outputs, and the number of terms."""
  mask = step_mask(lengths, predictions.shape[1])[..., None]
  err = jnp.where(mask, jnp.abs(predictions - targets), 0.0)
  return err.sum(), mask.sum() * jnp.asarray(predictions.shape[-1], jnp.float32)


def step_cross_entropy(logits: jax.Array, labels: jax.Array, lengths: jax.Array):
  """Softmax cross-entropy summed over real steps, and the number of real steps.

  Args:
    logits: float[batch, time, classes]; labels: int[batch, time]; lengths: int[batch].
  """
  mask = step_mask(lengths, logits.shape[1])
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return jnp.where(mask, ce, 0.0).sum(), mask.sum().astype(jnp.float32)


def step_accuracy(logits: jax.Array, labels: jax.Array, lengths: jax.Array):
  """Correct argmax labels over real steps, and the number of real steps."""
  mask = step_mask(lengths, logits.shape[1])
  hit = (jnp.argmax(logits, -1) == labels) & mask
  return hit.sum().astype(jnp.float32), mask.sum().astype(jnp.float32)


def sequence_cross_entropy(logits: jax.Array, labels: jax.Array, lengths: jax.Array):
  """Cross-entropy summed over the real examples (length > 0), and their number.

  Args:
    logits: float[batch, classes]; labels: int[batch]; lengths: int[batch] (padding
      examples, length 0, weigh nothing).
  """
  real = lengths > 0
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  return jnp.where(real, ce, 0.0).sum(), real.sum().astype(jnp.float32)


def sequence_accuracy(logits: jax.Array, labels: jax.Array, lengths: jax.Array):
  """Correct argmax labels over the real examples, and their number."""
  real = lengths > 0
  hit = (jnp.argmax(logits, -1) == labels) & real
  return hit.sum().astype(jnp.float32), real.sum().astype(jnp.float32)


def mean_probability_logits(member_outputs: jax.Array) -> jax.Array:
  """An ensemble's logits from its members' float[N, ..., classes]: the log of the members'
  mean probabilities, so argmax, softmax and cross-entropy see the averaged distribution."""
  probs = jax.nn.softmax(member_outputs.astype(jnp.float32), -1).mean(0)
  return jnp.log(jnp.maximum(probs, 1e-30))
