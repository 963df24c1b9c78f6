"""The LSTM recurrence: one `lax.scan` that advances every direction of a layer at once.

Everything here is a pure function of arrays. The input projection of all time steps is
computed by the caller (one large matmul outside the loop); the scan only does the
recurrent matmul and the gate arithmetic.

Layout of a recurrence's arguments and results (time-major, natural time order for both
directions, so the caller's input projection is one matmul written straight into it):
  xp:    [time, batch, dirs, 4 * hidden]  input projection plus both biases.
  valid: [time, batch]                    True where the step is a real (unpadded) step.
  w_hh:  [dirs, hidden, 4 * hidden]       recurrent weights, gate order i, f, g, o.
  hs:    [time, batch, dirs, hidden]      outputs, zero at padded steps.
Inside, scan step s advances the forward direction at time s and the backward direction
at time T-1-s ("step order": [time, dirs, batch, ...], the backward direction reversed).

Padding rule: at a padded step the carry is kept unchanged and the output is zero. For the
forward direction that freezes the state at `length - 1`; for the reversed direction the
padded steps come first, so the state stays at its initial value until the sequence's true
last step. One rule handles both directions without gathering or flipping per sequence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def lstm_gates(gates: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Applies the LSTM nonlinearities.

  Args:
    gates: float[..., 4 * hidden], pre-activations in PyTorch order i, f, g, o.
    c: float[..., hidden], the previous cell state.

  Returns:
    (h, c): the new hidden and cell states, float[..., hidden].
  """
  i, f, g, o = jnp.split(gates, 4, axis=-1)
  c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
  h = jax.nn.sigmoid(o) * jnp.tanh(c)
  return h, c


def to_steps(a: jax.Array) -> jax.Array:
  """[time, batch, dirs, ...] in natural order -> [time, dirs, batch, ...] in step order."""
  return jnp.stack([a[:, :, 0], a[::-1, :, 1]][: a.shape[2]], axis=1)


def from_steps(a: jax.Array) -> jax.Array:
  """[time, dirs, batch, ...] in step order -> [time, batch, dirs, ...] in natural order."""
  return jnp.stack([a[:, 0], a[::-1, 1]][: a.shape[1]], axis=2)


def step_mask(valid: jax.Array, dirs: int) -> jax.Array:
  """bool[time, batch] -> bool[time, dirs, batch, 1] in step order."""
  return jnp.stack([valid, valid[::-1]][:dirs], axis=1)[..., None]


def recurrent_matmul(h: jax.Array, w_hh: jax.Array, dtype=None) -> jax.Array:
  """h [dirs, batch, hidden] @ w_hh [dirs, hidden, 4h] -> float32 [dirs, batch, 4h]."""
  if dtype is not None:
    h, w_hh = h.astype(dtype), w_hh.astype(dtype)
  return jnp.einsum('dbh,dhg->dbg', h, w_hh, preferred_element_type=jnp.float32)


def lstm_scan_reference(
  xp: jax.Array,
  valid: jax.Array,
  w_hh: jax.Array,
  h0: jax.Array,
  c0: jax.Array,
  matmul_dtype=None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """Runs the masked recurrence; gradients come from autodiff through the scan.

  Args:
    xp: float32[time, batch, dirs, 4 * hidden].
    valid: bool[time, batch].
    w_hh: float[dirs, hidden, 4 * hidden].
    h0, c0: float32[dirs, batch, hidden], initial states.
    matmul_dtype: optional dtype for the recurrent matmul operands (e.g. bfloat16);
      accumulation is always float32.

  Returns:
    hs: float32[time, batch, dirs, hidden], zero at padded steps.
    (h_n, c_n): float32[dirs, batch, hidden], states after each direction's last real step.
  """

  def step(carry, inputs):
    h, c = carry
    x_t, m_t = inputs
    h_new, c_new = lstm_gates(x_t + recurrent_matmul(h, w_hh, matmul_dtype), c)
    h = jnp.where(m_t, h_new, h)
    c = jnp.where(m_t, c_new, c)
    return (h, c), jnp.where(m_t, h_new, 0.0)

  mask = step_mask(valid, w_hh.shape[0])
  (h_n, c_n), hs = jax.lax.scan(step, (h0, c0), (to_steps(xp), mask))
  return from_steps(hs), (h_n, c_n)
