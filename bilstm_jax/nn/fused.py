"""A fast LSTM layer: a masked scan with a hand-written backward pass.

Same signature, layouts and numbers as `recurrence.lstm_layer_reference`. Autodiff through
`lax.scan` stores every intermediate of the step and computes the weight gradient one step
at a time; here the forward scan saves only what the backward needs (gate activations,
tanh of the new cell state, and the carried states), the backward scan carries only the
recurrent gradient (dh, dc) and produces the gate pre-activation gradients of every step,
and the gradients of x, w_ih, bias and w_hh are then large matmuls over all time steps.

The two loops come in two versions with the same inputs and outputs: `lax.scan`s (here;
`impl='fused'`, any platform) or the multi-threaded CPU kernel of `bilstm_jax.nn.native`
(`native=True`, `impl='native'`), whose forward also computes the input projection inside
its loop. The weight gradients are shared: per direction one matmul, [x^T; h_prev^T; 1]
@ d_gates, gives dW_ih, dW_hh and the bias gradient at once.

The layer is a `jax.custom_jvp`: its rule computes the tangent with `linear_pair`, a
primitive whose transpose is the backward pass above. Reverse mode (`jax.grad`) runs that
backward pass, forward mode (`jax.jvp`, `jax.jacfwd`) a tangent recurrence in `lax.scan`,
and both are differentiable again (second order). A `jax.custom_vjp` compiled to the same
first-order program but had no forward mode.

Layout, chosen so that no large array is copied, transposed or zero-filled:
  * The custom gradient covers the whole layer, input projection included. Each
    direction has its own [time, batch, 4h] buffer in natural time order: the forward
    scan carries it, reads step s's projection from it (the backward direction at time
    T-1-s) and overwrites that row with the gate activations in place; the backward scan
    carries the same buffer on and overwrites each row with the gate gradients. Every
    weight gradient is then part of a plain [time * batch, k] matmul on a contiguous buffer, and
    nothing of that size is a scan output (XLA zero-fills every scan output first).
  * Handing the gate gradients back to autodiff as the gradient of a [time, batch, dirs,
    4h] projection instead made XLA copy or transpose that array once per consumer.

Two choices keep the loop body cheap on XLA CPU, where elementwise work inside a loop costs
about three times as much as outside it:
  * one tanh evaluates all four gates: sigmoid(x) = 0.5 * tanh(0.5 * x) + 0.5, so the gate
    vector is scaled by k = (0.5, 0.5, 1, 0.5) per gate (i, f, g, o), passed through tanh
    and mapped back with `a * k + (1 - k)`. The derivative of every gate then has the same
    form: k**2 - (act - (1 - k))**2 (`_gate_slope`).
  * the states before each step are the scan outputs (the backward needs exactly those);
    the zero-masked output sequence is built from them outside the loop, as one
    whole-array operation. (The CPU kernel writes the outputs itself.)
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from bilstm_jax.nn import linear_pair
from bilstm_jax.nn import native as native_kernel
from bilstm_jax.nn.recurrence import matmul, recurrent_matmul, step_mask, vary_like


def _gate_scale(hidden: int) -> jax.Array:
  """float32[4 * hidden]: 0.5 on the sigmoid gates (i, f, o), 1 on the cell gate (g)."""
  k = jnp.array([0.5, 0.5, 1.0, 0.5], jnp.float32)
  return jnp.repeat(k, hidden)


def _gate_slope(act: jax.Array) -> jax.Array:
  """d act / d pre-activation of every gate, from the activations [..., 4h]:
  k**2 - (act - (1 - k))**2 (sigmoid' = s(1 - s) on i, f, o; tanh' = 1 - t**2 on g)."""
  k = _gate_scale(act.shape[-1] // 4)
  return k * k - jnp.square(act - (1.0 - k))


def _step_indices(time: int) -> jax.Array:
  """int32[time]: 0 .. time-1.

  Signed, although unsigned indices spare JAX's negative-index fix-up per step (-2% at
  long): with them XLA CPU miscompiled a vmapped one-member ensemble (an index computed
  as a float; tests/test_ensemble.py), so correctness wins.
  """
  return jnp.arange(time, dtype=jnp.int32)


def _times(s, time: int) -> tuple:
  """The time index each direction handles at scan step s: forward s, backward T-1-s."""
  return s, time - 1 - s


def _read_rows(bufs: tuple, s) -> jax.Array:
  """Step s's rows of the per-direction [time, batch, n] buffers: [dirs, batch, n]."""
  times = _times(s, bufs[0].shape[0])
  return jnp.stack(
    [jax.lax.dynamic_index_in_dim(b, t, keepdims=False) for b, t in zip(bufs, times, strict=False)]
  )


def _write_rows(bufs: tuple, s, values: jax.Array) -> tuple:
  """Overwrites step s's rows of the per-direction buffers with values[d] (in place)."""
  times = _times(s, bufs[0].shape[0])
  return tuple(
    jax.lax.dynamic_update_index_in_dim(b, v, t, 0)
    for b, v, t in zip(bufs, values, times, strict=False)
  )


def _valid(mask):
  """bool[time, dirs, batch, 1] step-order mask -> bool[time, batch] (natural order)."""
  return mask[:, 0, :, 0]


def _forward(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype, native):
  """Runs the recurrence; returns the outputs, the final states and what the backward needs.

  That is `lhs` (per direction [x^T; h_prev^T; 1], [features + hidden + 1, time * batch]
  with the states before each time step in natural order: the left operand of the weight
  gradients' matmul), `c_prev` and `tc` ([time, dirs, batch, hidden], step order) and
  `acts` (per direction the [time, batch, 4h] gate activations, natural order).
  """
  forward = _forward_kernel if native else _forward_xla
  return forward(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype)


def _forward_xla(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype):
  """`_forward` with the loop as a `lax.scan`."""
  (h_n, c_n), (h_prev, c_prev, acts, tc) = _forward_scan(
    x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype
  )
  hs = _outputs(mask, h_prev, h_n)
  x_t = _rows(x).T
  ones = jnp.ones((1, x_t.shape[1]), jnp.float32)
  lhs = tuple(
    jax.lax.optimization_barrier(
      jnp.concatenate([x_t.astype(jnp.float32), _rows(h[::-1] if d else h).T, ones])
    )
    for d, h in enumerate(h_prev)
  )
  return hs, (h_n, c_n), (lhs, c_prev, acts, tc)


# The kernel's loops have no derivatives of their own. A first-order derivative never needs
# one (`_layer_jvp` calls the forward loop on plain values, and `_DERIVATIVES` the backward
# loop), but differentiating that derivative again does: a gradient of a gradient
# (meta-learning), a Hessian-vector product, `jax.hessian`. There the JVP of the forward
# loop is that of its `lax.scan` version, which computes the same values (and
# `_DERIVATIVES` differentiates the backward through `_backward_scan`).
@partial(jax.custom_jvp, nondiff_argnums=(7,))
def _forward_kernel(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype):
  """`_forward` with both loops in the CPU kernel."""
  hs, acts, lhs, c_prev, tc, h_n, c_n = native_kernel.lstm_fwd(
    x, _valid(mask), w_ih, bias, w_hh, h0, c0, bf16=_bf16(matmul_dtype)
  )
  return hs, (h_n, c_n), (lhs, c_prev, acts, tc)


@_forward_kernel.defjvp
def _forward_kernel_jvp(matmul_dtype, primals, tangents):
  return jax.jvp(partial(_forward_xla, matmul_dtype=matmul_dtype), primals, tangents)


def _forward_scan(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype):
  """The forward recurrence as a `lax.scan`; `h_prev` comes in step order."""
  time = x.shape[0]
  dirs, hidden = w_hh.shape[0], w_hh.shape[1]
  # Per direction, the input projection of every step: the buffer the scan carries.
  bufs = tuple(matmul('tbf,fg->tbg', x, w_ih[d], matmul_dtype) for d in range(dirs))
  bias = bias.astype(jnp.float32)[:, None, :]
  k = _gate_scale(hidden)
  shift = 1.0 - k

  def step(carry, inputs):
    h, c, bufs = carry
    s, m_t = inputs
    gates = _read_rows(bufs, s) + bias + recurrent_matmul(h, w_hh, matmul_dtype)
    act = jnp.tanh(gates * k) * k + shift  # i, f, o: sigmoid; g: tanh
    i, f, g, o = jnp.split(act, 4, axis=-1)
    c_new = f * c + i * g
    tc = jnp.tanh(c_new)
    bufs = _write_rows(bufs, s, act)
    new_carry = (jnp.where(m_t, o * tc, h), jnp.where(m_t, c_new, c), bufs)
    return new_carry, (tuple(h), c, tc)

  init = vary_like((h0, c0, bufs), bias, w_hh, mask)  # see vary_like: for jax.shard_map
  (h_n, c_n, acts), (h_prev, c_prev, tc) = jax.lax.scan(step, init, (_step_indices(time), mask))
  return (h_n, c_n), (h_prev, c_prev, acts, tc)


def _outputs(mask, h_prev, h_n):
  """The zero-masked outputs [time, batch, dirs * hidden] in natural order."""
  outs = []
  for d, h in enumerate(h_prev):
    h_after = jnp.concatenate([h[1:], h_n[d][None]], axis=0)
    out = jnp.where(mask[:, d], h_after, 0.0)
    outs.append(out[::-1] if d else out)
  return jnp.concatenate(outs, axis=-1)


def lstm_layer_fused(
  x: jax.Array,
  valid: jax.Array,
  w_ih: jax.Array,
  bias: jax.Array,
  w_hh: jax.Array,
  h0: jax.Array,
  c0: jax.Array,
  matmul_dtype=None,
  native: bool = False,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """Runs one LSTM layer with a hand-written backward pass.

  Args:
    x, valid, w_ih, bias, w_hh, h0, c0: as in `bilstm_jax.nn.recurrence`.
    matmul_dtype: optional dtype for the matmul operands (e.g. bfloat16), forward and
      backward; accumulation, states and gate arithmetic are always float32.
    native: run the two loops with the CPU kernel of `bilstm_jax.nn.native` instead of
      `lax.scan` (CPU only; matmul operands float32 or bfloat16).

  Returns:
    hs: float32[time, batch, dirs * hidden], zero at padded steps.
    (h_n, c_n): float32[dirs, batch, hidden], states after each direction's last real step.
  """
  if native and not native_supports(matmul_dtype):
    raise ValueError(
      "impl='native' computes with float32 or bfloat16 matmul operands; got "
      f"{jnp.dtype(matmul_dtype).name}. Use impl='fused' for other dtypes."
    )
  mask = step_mask(valid, w_hh.shape[0])
  return _layer(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype, native)


def native_supports(matmul_dtype) -> bool:
  """Whether the CPU kernel computes with these matmul operands (None means float32)."""
  return matmul_dtype is None or jnp.dtype(matmul_dtype) in (jnp.float32, jnp.bfloat16)


def _bf16(matmul_dtype) -> bool:
  return matmul_dtype is not None and jnp.dtype(matmul_dtype) == jnp.bfloat16


def lstm_layer_native(x, valid, w_ih, bias, w_hh, h0, c0, matmul_dtype=None):
  """`lstm_layer_fused` with both loops in the CPU kernel (`BiLSTM(impl='native')`)."""
  return lstm_layer_fused(x, valid, w_ih, bias, w_hh, h0, c0, matmul_dtype, native=True)


@partial(jax.custom_jvp, nondiff_argnums=(7, 8))
def _layer(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype, native):
  hs, final, _ = _forward(x, mask, w_ih, bias, w_hh, h0, c0, matmul_dtype, native)
  return hs, final


@_layer.defjvp
def _layer_jvp(matmul_dtype, native, primals, tangents):
  """The forward pass, and the tangent through `_DERIVATIVES`: in reverse mode JAX
  transposes that into `_cotangents`, the hand-written backward pass."""
  hs, final, per_step = _forward(*primals, matmul_dtype, native)
  residuals = (*primals, per_step)
  linear = tuple(t for i, t in enumerate(tangents) if i != 1)  # all but the mask's
  # Inside jax.shard_map, a weight's tangent must vary like the outputs it moves (then the
  # per-device weight gradients transpose into their sum); see vary_like.
  linear = vary_like(linear, residuals, linear)
  outputs = (hs, *final)
  d_hs, d_hn, d_cn = _DERIVATIVES.apply((matmul_dtype, native), residuals, linear, outputs)
  return (hs, final), (d_hs, (d_hn, d_cn))


def _tangents(static, residuals, tangents):
  """Forward mode: the tangents of (hs, h_n, c_n) from those of the layer's inputs.

  Per direction, every step's gate pre-activation moves by P_t + dh_{t-1} @ w_hh, where P
  (from the tangents of x, the weights and the bias) is one matmul over all steps with the
  forward's [x^T; h_prev^T; 1]; the scan then carries (dh, dc) through the gates.
  """
  matmul_dtype, _ = static
  x, mask, w_ih, bias, w_hh, h0, c0, (lhs, c_prev, acts, tc) = residuals
  dx, dw_ih, dbias, dw_hh, dh0, dc0 = tangents
  time, batch = x.shape[:2]
  dirs = w_hh.shape[0]
  p = []
  for d in range(dirs):
    dw = jnp.concatenate([dw_ih[d], dw_hh[d], dbias[d][None]]).astype(jnp.float32)
    p_d = matmul('km,kg->mg', lhs[d], dw, matmul_dtype)
    p.append(p_d.reshape(time, batch, -1) + matmul('tbf,fg->tbg', dx, w_ih[d], matmul_dtype))

  def step(carry, inputs):
    dh, dc = carry
    s, m_t, tc_t, cp_t = inputs
    act = _read_rows(acts, s)
    d_act = (_read_rows(p, s) + recurrent_matmul(dh, w_hh, matmul_dtype)) * _gate_slope(act)
    i, f, g, o = jnp.split(act, 4, axis=-1)
    di, df, dg, do = jnp.split(d_act, 4, axis=-1)
    dc_new = df * cp_t + f * dc + di * g + i * dg
    dh_new = do * tc_t + o * (1.0 - tc_t * tc_t) * dc_new
    out = jnp.where(m_t, dh_new, 0.0)
    return (jnp.where(m_t, dh_new, dh), jnp.where(m_t, dc_new, dc)), out

  inputs = (_step_indices(time), mask, tc, c_prev)
  init = vary_like((dh0.astype(jnp.float32), dc0.astype(jnp.float32)), p, acts, w_hh, inputs)
  (dh_n, dc_n), d_out = jax.lax.scan(step, init, inputs)
  d_hs = jnp.concatenate([d_out[::-1, d] if d else d_out[:, d] for d in range(dirs)], axis=-1)
  return d_hs, dh_n, dc_n


def _cotangents(static, residuals, cotangents):
  """Reverse mode: the gradients of the layer's inputs (but the mask) from those of (hs,
  h_n, c_n); the backward recurrence, then the weight gradients as large matmuls."""
  matmul_dtype, native = static
  x, mask, w_ih, bias, w_hh, h0, c0, (lhs, c_prev, acts, tc) = residuals
  d_hs, d_hn, d_cn = cotangents
  if native:
    d_gates, dh0, dc0 = native_kernel.lstm_bwd(
      acts, _valid(mask), d_hs, tc, c_prev, w_hh, d_hn, d_cn, bf16=_bf16(matmul_dtype)
    )
  else:
    d_gates, dh0, dc0 = _backward_scan(matmul_dtype, mask, w_hh, c_prev, acts, tc, d_hs, d_hn, d_cn)
  return _weight_grads(matmul_dtype, x, w_ih, bias, w_hh, h0, c0, lhs, d_gates, dh0, dc0)


def _backward_scan(matmul_dtype, mask, w_hh, c_prev, acts, tc, d_hs, d_hn, d_cn):
  """The backward recurrence as a `lax.scan`: (gate gradients, dh0, dc0)."""
  time = mask.shape[0]
  dirs, hidden = w_hh.shape[0], w_hh.shape[1]
  # Transposed once, outside the loop: [dirs, 4h, hidden].
  w_t = jnp.swapaxes(w_hh if matmul_dtype is None else w_hh.astype(matmul_dtype), 1, 2)

  # The outputs' gradient, split per direction like the buffers: [time, batch, hidden].
  d_out = tuple(d_hs[..., d * hidden : (d + 1) * hidden] for d in range(dirs))

  def step(carry, inputs):
    dh, dc, bufs = carry
    s, m_t, tc_t, cp_t = inputs
    act_t = _read_rows(bufs, s)
    i, f, g, o = jnp.split(act_t, 4, axis=-1)
    dh_new = jnp.where(m_t, dh + _read_rows(d_out, s), 0.0)
    dc_new = jnp.where(m_t, dc, 0.0) + dh_new * o * (1.0 - tc_t * tc_t)
    d_act = jnp.concatenate([dc_new * g, dc_new * cp_t, dc_new * i, dh_new * tc_t], axis=-1)
    d_gates = d_act * _gate_slope(act_t)
    dh_rec = jnp.einsum(
      'dbg,dgh->dbh', d_gates.astype(w_t.dtype), w_t, preferred_element_type=jnp.float32
    )
    dh = jnp.where(m_t, dh_rec, dh)
    dc = jnp.where(m_t, dc_new * f, dc)
    bufs = _write_rows(bufs, s, d_gates)
    return (dh, dc, bufs), None

  steps = (_step_indices(time), mask, tc, c_prev)
  # The activation buffers become the gate gradients, row by row.
  init = vary_like((d_hn, d_cn, acts), d_out, w_t, steps)
  (dh0, dc0, d_gates), _ = jax.lax.scan(step, init, steps, reverse=True)
  return d_gates, dh0, dc0


def _rows(a):
  """[..., n] -> [rows, n]."""
  return a.reshape(-1, a.shape[-1])


def _weight_grads(matmul_dtype, x, w_ih, bias, w_hh, h0, c0, lhs, d_gates, dh0, dc0):
  """The gradients of every input of the layer, given the gate gradients.

  Per direction, dW_ih, dW_hh and the bias gradient come from one matmul over all (time,
  batch) rows, lhs [features + hidden + 1, rows] @ d_gates [rows, 4h], with lhs = [x^T;
  h_prev^T; 1] materialised by the forward: one large matmul reads (and packs) the gate
  gradients once, the row of ones sums them for the bias gradient, and no operand is read
  transposed (XLA's slower path: dW at medium 32 vs 27 ms per direction, NOTES.md).
  With a `matmul_dtype` (bfloat16) the bias gradient, like dW, sums rounded gate gradients.
  """
  dirs, features = w_hh.shape[0], x.shape[-1]
  d_w_ih, d_w_hh, d_bias, d_x = [], [], [], 0.0
  for d in range(dirs):
    grads = matmul('mk,kg->mg', lhs[d], _rows(d_gates[d]), matmul_dtype)
    d_w_ih.append(grads[:features])
    d_w_hh.append(grads[features:-1])
    d_bias.append(grads[-1])
    d_x = d_x + matmul('tbg,fg->tbf', d_gates[d], w_ih[d], matmul_dtype)
  return (
    d_x.astype(x.dtype),
    jnp.stack(d_w_ih).astype(w_ih.dtype),
    jnp.stack(d_bias).astype(bias.dtype),
    jnp.stack(d_w_hh).astype(w_hh.dtype),
    dh0.astype(h0.dtype),
    dc0.astype(c0.dtype),
  )


# Differentiating the derivatives themselves (second order) goes through the scans.
_DERIVATIVES = linear_pair.LinearPair(
  'bilstm_jax_lstm_layer_tangent', _tangents, _cotangents, lambda static: (static[0], False)
)
