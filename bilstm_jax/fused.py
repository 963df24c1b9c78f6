"""A fast LSTM recurrence: a masked scan with a hand-written backward pass (`custom_vjp`).

Same signature, layouts and numbers as `recurrence.lstm_scan_reference`. Autodiff through
`lax.scan` stores every intermediate of the step and computes the weight gradient one step
at a time; here the forward scan saves only what the backward needs (gate activations,
tanh of the new cell state, and the carried states), the backward scan carries only the
recurrent gradient (dh, dc) and emits the gate pre-activation gradients of every step, and
the recurrent weight gradient is then one large matmul over all time steps. The gradient
of `xp` is those gate gradients, so the caller's autodiff turns them into the input-weight,
bias and input gradients as large matmuls too.

Two choices keep the loop body cheap on XLA CPU, where elementwise work inside a loop costs
about three times as much as outside it:
  * one tanh evaluates all four gates: sigmoid(x) = 0.5 * tanh(0.5 * x) + 0.5, so the gate
    vector is scaled by k = (0.5, 0.5, 1, 0.5) per gate (i, f, g, o), passed through tanh
    and mapped back with `a * k + (1 - k)`. The derivative of every gate then has the same
    form: k**2 - (act - (1 - k))**2.
  * the states before each step are the scan outputs (the backward needs exactly those);
    the zero-masked output sequence is built from them outside the loop, as one
    whole-array operation.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from bilstm_jax.recurrence import from_steps, recurrent_matmul, step_mask, to_steps


def _gate_scale(hidden: int) -> jax.Array:
  """float32[4 * hidden]: 0.5 on the sigmoid gates (i, f, o), 1 on the cell gate (g)."""
  k = jnp.array([0.5, 0.5, 1.0, 0.5], jnp.float32)
  return jnp.repeat(k, hidden)


def _forward(xp, mask, w_hh, h0, c0, matmul_dtype):
  """Runs the recurrence; returns the states before each step, activations and tanh(c).

  `xp` is read in natural order inside the loop (the backward direction at T-1-s), so
  the [time, batch, dirs, 4h] projection is never copied into step order.
  """
  k = _gate_scale(h0.shape[-1])
  shift = 1.0 - k
  time, dirs = xp.shape[0], xp.shape[2]

  def step(carry, inputs):
    h, c = carry
    s, m_t = inputs
    x_t = jnp.stack([xp[s, :, 0], xp[time - 1 - s, :, 1]][:dirs])
    gates = x_t + recurrent_matmul(h, w_hh, matmul_dtype)
    act = jnp.tanh(gates * k) * k + shift  # i, f, o: sigmoid; g: tanh
    i, f, g, o = jnp.split(act, 4, axis=-1)
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    new_carry = (jnp.where(m_t, o * tc, h), jnp.where(m_t, c_new, c))
    return new_carry, (h, c, act, tc)

  steps = (jnp.arange(time), mask)
  (h_n, c_n), (h_prev, c_prev, act, tc) = jax.lax.scan(step, (h0, c0), steps)
  return (h_n, c_n), (h_prev, c_prev, act, tc)


def _outputs(mask, h_prev, h_n):
  """The zero-masked outputs [time, batch, dirs, hidden] from the step-order states."""
  h_after = jnp.concatenate([h_prev[1:], h_n[None]], axis=0)
  return from_steps(jnp.where(mask, h_after, 0.0))


def lstm_scan_fused(
  xp: jax.Array,
  valid: jax.Array,
  w_hh: jax.Array,
  h0: jax.Array,
  c0: jax.Array,
  matmul_dtype=None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """Runs the masked recurrence with a hand-written backward pass.

  Args:
    xp: float32[time, batch, dirs, 4 * hidden], input projection plus both biases, in
      natural time order for both directions.
    valid: bool[time, batch], True at real (unpadded) steps.
    w_hh: float[dirs, hidden, 4 * hidden], recurrent weights, gate order i, f, g, o.
    h0, c0: float32[dirs, batch, hidden], initial states.
    matmul_dtype: optional dtype for the matmul operands (e.g. bfloat16), forward and
      backward; accumulation is always float32.

  Returns:
    hs: float32[time, batch, dirs, hidden], zero at padded steps.
    (h_n, c_n): float32[dirs, batch, hidden], states after each direction's last real step.
  """
  return _scan(xp, step_mask(valid, w_hh.shape[0]), w_hh, h0, c0, matmul_dtype)


@partial(jax.custom_vjp, nondiff_argnums=(5,))
def _scan(xp, mask, w_hh, h0, c0, matmul_dtype):
  (h_n, c_n), (h_prev, _, _, _) = _forward(xp, mask, w_hh, h0, c0, matmul_dtype)
  return _outputs(mask, h_prev, h_n), (h_n, c_n)


def _fused_fwd(xp, mask, w_hh, h0, c0, matmul_dtype):
  (h_n, c_n), (h_prev, c_prev, act, tc) = _forward(xp, mask, w_hh, h0, c0, matmul_dtype)
  residuals = (mask, w_hh, h_prev, c_prev, act, tc)
  return (_outputs(mask, h_prev, h_n), (h_n, c_n)), residuals


def _fused_bwd(matmul_dtype, residuals, cotangents):
  mask, w_hh, h_prev, c_prev, act, tc = residuals
  d_hs, (d_hn, d_cn) = cotangents
  d_hs = to_steps(d_hs)
  hidden = h_prev.shape[-1]
  k = _gate_scale(hidden)
  shift = 1.0 - k
  k2 = k * k
  w_t = w_hh if matmul_dtype is None else w_hh.astype(matmul_dtype)

  def step(carry, inputs):
    dh, dc = carry
    dy_t, m_t, act_t, tc_t, cp_t = inputs
    i, f, g, o = jnp.split(act_t, 4, axis=-1)
    # Padded steps pass the carried gradient through untouched and see no output gradient.
    dh_new = jnp.where(m_t, dh + dy_t, 0.0)
    dc_new = jnp.where(m_t, dc, 0.0) + dh_new * o * (1.0 - tc_t * tc_t)
    d_act = jnp.concatenate([dc_new * g, dc_new * cp_t, dc_new * i, dh_new * tc_t], axis=-1)
    d_gates = d_act * (k2 - jnp.square(act_t - shift))
    dh_rec = jnp.einsum(
      'dbg,dhg->dbh', d_gates.astype(w_t.dtype), w_t, preferred_element_type=jnp.float32
    )
    dh = jnp.where(m_t, dh_rec, dh)
    dc = jnp.where(m_t, dc_new * f, dc)
    return (dh, dc), d_gates

  (dh0, dc0), d_gates = jax.lax.scan(
    step, (d_hn, d_cn), (d_hs, mask, act, tc, c_prev), reverse=True
  )
  lhs, rhs = h_prev, d_gates
  if matmul_dtype is not None:
    lhs, rhs = lhs.astype(matmul_dtype), rhs.astype(matmul_dtype)
  d_w_hh = jnp.einsum('tdbh,tdbg->dhg', lhs, rhs, preferred_element_type=jnp.float32)
  return from_steps(d_gates), None, d_w_hh.astype(w_hh.dtype), dh0, dc0


_scan.defvjp(_fused_fwd, _fused_bwd)
