"""Instance normalisation for forecasting: each window by its own statistics.

A forecasting model shifts (and optionally scales) each input window by its own
statistics before its encoder and undoes it on the forecast after its head, so that a
level the training split never saw does not throw the model off (RevIN, Kim et al. 2022;
NLinear's last-value subtraction, Zeng et al. 2023). The models that use it live in
`bilstm_jax.models.forecast`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

NORMS = ('none', 'last', 'mean', 'revin')

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


def instance_denorm(
  y: jax.Array, stats: Stats, affine: tuple[jax.Array, jax.Array] | None = None
) -> jax.Array:
  """Undoes `instance_norm` (and RevIN's learned affine map) on a forecast.

  Args:
    y: float32[batch, horizon, channels], in the normalised scale.
    stats: (loc, scale) from `instance_norm`, each float32[batch, 1, channels].
    affine: None, or RevIN's (weight, bias), each float32[channels], applied after
      normalising (`x * weight + bias`) and undone here first.

  Returns:
    float32[batch, horizon, channels] in the scale of the inputs.
  """
  if affine is not None:
    weight, bias = affine
    # RevIN's guard: the learned scale may pass near zero during training.
    y = (y - bias) / (weight + 1e-10)
  loc, scale = stats
  return y * scale + loc
