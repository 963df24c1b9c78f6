"""One LSTM layer: the input projection and one `lax.scan` that advances every direction.

Everything here is a pure function of arrays. The input projection of all time steps is
one large matmul outside the loop; the scan only does the recurrent matmul and the gate
arithmetic.

A layer function (`lstm_layer_reference` here, `fused.lstm_layer_fused`) takes and returns
time-major arrays in natural time order for both directions:
  x:      [time, batch, features]          the layer's inputs.
  valid:  [time, batch]                    True where the step is a real (unpadded) step.
  w_ih:   [dirs, features, 4 * hidden]     input weights, gate order i, f, g, o.
  bias:   [dirs, 4 * hidden]               b_ih + b_hh.
  w_hh:   [dirs, hidden, 4 * hidden]       recurrent weights.
  h0, c0: [dirs, batch, hidden]            initial states.
  hs:     [time, batch, dirs * hidden]     outputs (forward units, then backward), zero at
                                           padded steps.
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


def vary_like(values, *operands):
  """`values` (a pytree of arrays), typed to vary over every manual mesh axis that any of
  `operands` (pytrees) varies over.

  Inside `jax.shard_map` (with its default `check_vma=True`), JAX types each value by the
  mesh axes along which it differs between devices, and transposes by those types. A
  `lax.scan`'s initial carry must then have the type of its body's result, which depends on
  the inputs and weights too; a custom call's results must have the type its operands
  give them, or gradients come out wrong. Outside `shard_map` the added zero is a no-op
  that XLA removes.
  """
  zero = jnp.zeros((), jnp.float32)
  for a in jax.tree.leaves(operands):
    zero = zero + jnp.sum(jnp.ravel(a)[:0]).astype(jnp.float32)  # empty: always 0
  return jax.tree.map(lambda v: v + zero.astype(v.dtype), values)


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


def matmul(spec: str, a: jax.Array, b: jax.Array, dtype=None) -> jax.Array:
  """`jnp.einsum(spec, a, b)` with operands cast to `dtype` (if given), float32 result."""
  if dtype is not None:
    a, b = a.astype(dtype), b.astype(dtype)
  return jnp.einsum(spec, a, b, preferred_element_type=jnp.float32)


def recurrent_matmul(h: jax.Array, w_hh: jax.Array, dtype=None) -> jax.Array:
  """h [dirs, batch, hidden] @ w_hh [dirs, hidden, 4h] -> float32 [dirs, batch, 4h]."""
  return matmul('dbh,dhg->dbg', h, w_hh, dtype)


def project(x: jax.Array, w_ih: jax.Array, bias: jax.Array, dtype=None) -> jax.Array:
  """The input projection of every step and direction, as one matmul.

  Args:
    x: float[time, batch, features]; w_ih: [dirs, features, 4h]; bias: [dirs, 4h].
    dtype: optional dtype of the matmul operands; the result is float32.

  Returns:
    float32[time, batch, dirs, 4h], natural time order for both directions.
  """
  time, batch, features = x.shape
  dirs, _, gates = w_ih.shape
  w = jnp.moveaxis(w_ih, 0, 1).reshape(features, dirs * gates)
  xp = matmul('tbf,fg->tbg', x, w, dtype) + bias.astype(jnp.float32).reshape(dirs * gates)
  return xp.reshape(time, batch, dirs, gates)


def lstm_layer_reference(
  x: jax.Array,
  valid: jax.Array,
  w_ih: jax.Array,
  bias: jax.Array,
  w_hh: jax.Array,
  h0: jax.Array,
  c0: jax.Array,
  matmul_dtype=None,
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
  """Runs one LSTM layer; gradients come from autodiff through the scan.

  Args:
    x, valid, w_ih, bias, w_hh, h0, c0: as in the module docstring.
    matmul_dtype: optional dtype of the matmul operands (e.g. bfloat16); accumulation,
      states and gate arithmetic are always float32.

  Returns:
    hs: float32[time, batch, dirs * hidden], zero at padded steps.
    (h_n, c_n): float32[dirs, batch, hidden], states after each direction's last real step.
  """

  def step(carry, inputs):
    h, c = carry
    x_t, m_t = inputs
    h_new, c_new = lstm_gates(x_t + recurrent_matmul(h, w_hh, matmul_dtype), c)
    h = jnp.where(m_t, h_new, h)
    c = jnp.where(m_t, c_new, c)
    return (h, c), jnp.where(m_t, h_new, 0.0)

  xp = project(x, w_ih, bias, matmul_dtype)
  mask = step_mask(valid, w_hh.shape[0])
  init = vary_like((h0, c0), xp, mask, w_hh)  # see vary_like: for jax.shard_map
  (h_n, c_n), hs = jax.lax.scan(step, init, (to_steps(xp), mask))
  hs = from_steps(hs)
  return hs.reshape(*hs.shape[:2], -1), (h_n, c_n)
