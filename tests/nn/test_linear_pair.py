"""`linear_pair.LinearPair` on a matrix-vector product, y = A @ v (A the residual).

The layer's tests (test_fused.py) use it for the LSTM; here each rule is seen on its own.
The transpose is `scale * A^T @ c`: with scale 1 it is the true transpose, and with
another scale a gradient shows whether reverse mode ran the hand-written function.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilstm_jax.nn.linear_pair import LinearPair

CALLS = []


def _forward(static, a, linear):
  CALLS.append('forward')
  return (a @ linear[0],)


def _transpose(static, a, cts):
  CALLS.append('transpose')
  return (static * a.T @ cts[0],)


PAIR = LinearPair('test_matvec', _forward, _transpose, differentiable=lambda static: static)


def matvec(a, v, scale=1.0):
  @jax.custom_jvp
  def f(a, v):
    return a @ v

  @f.defjvp
  def f_jvp(primals, tangents):
    (a, v), (da, dv) = primals, tangents
    y = a @ v
    (dy,) = PAIR.apply(scale, a, (dv,), (y,))
    return y, dy + da @ v

  return f(a, v)


A = jnp.arange(12.0).reshape(3, 4) / 7.0
V = jnp.cos(jnp.arange(4.0))


def test_reverse_mode_runs_the_hand_written_transpose():
  CALLS.clear()
  g = jax.grad(lambda v: jnp.sum(jnp.sin(matvec(A, v, scale=2.0))))(V)
  assert 'transpose' in CALLS
  np.testing.assert_allclose(g, 2.0 * A.T @ jnp.cos(A @ V), rtol=1e-6)
  g1 = jax.grad(lambda v: jnp.sum(jnp.sin(matvec(A, v))))(V)
  np.testing.assert_allclose(g1, jax.grad(lambda v: jnp.sum(jnp.sin(A @ v)))(V), rtol=1e-6)


def test_forward_mode_and_linear_transpose_both_ways():
  t = jnp.sin(jnp.arange(4.0))
  np.testing.assert_allclose(jax.jvp(lambda v: matvec(A, v), (V,), (t,))[1], A @ t, rtol=1e-6)
  _, vjp = jax.vjp(lambda v: matvec(A, v), V)
  (back,) = jax.linear_transpose(vjp, jnp.zeros(3))((t,))  # the transpose of the transpose
  np.testing.assert_allclose(back, A @ t, rtol=1e-6)


@pytest.mark.parametrize('batched', ['a', 'v', 'both'])
def test_vmap_of_the_gradient_with_unbatched_operands(batched):
  a_s = jnp.stack([A, 2.0 * A]) if batched in ('a', 'both') else A
  v_s = jnp.stack([V, -V]) if batched in ('v', 'both') else V
  axes = (0 if batched in ('a', 'both') else None, 0 if batched in ('v', 'both') else None)

  def grad_both(a, v):
    return jax.grad(lambda a, v: jnp.sum(jnp.sin(matvec(a, v))), (0, 1))(a, v)

  got = jax.jit(jax.vmap(grad_both, in_axes=axes))(a_s, v_s)
  for m in range(2):
    a_m = a_s[m] if axes[0] == 0 else a_s
    v_m = v_s[m] if axes[1] == 0 else v_s
    want = jax.grad(lambda a, v: jnp.sum(jnp.sin(a @ v)), (0, 1))(a_m, v_m)
    for x, y in zip(got, want, strict=True):
      np.testing.assert_allclose(x[m], y, rtol=1e-6)


def test_second_order_through_the_residual():
  """Differentiating the transpose in A (the residual): a Hessian-vector product in A."""

  def loss(a):
    return jnp.sum(jax.grad(lambda v: jnp.sum(jnp.sin(matvec(a, v))))(V) ** 2)

  def plain(a):
    return jnp.sum(jax.grad(lambda v: jnp.sum(jnp.sin(a @ v)))(V) ** 2)

  np.testing.assert_allclose(jax.grad(loss)(A), jax.grad(plain)(A), rtol=1e-5)
  t = jnp.ones_like(A)
  np.testing.assert_allclose(
    jax.jvp(jax.grad(loss), (A,), (t,))[1], jax.jvp(jax.grad(plain), (A,), (t,))[1], rtol=1e-5
  )
