"""`impl='cudnn'`: weight packing and masking, checked on CPU through JAX's reference.

The layer calls `jax.experimental.rnn.lstm` (cuDNN) on a GPU. Here the same call goes to
`cudnn.reference_lstm`, which unpacks the flat weights with JAX's own unpacker and runs
its reference LSTM, the function JAX's tests compare cuDNN against.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilstm_jax.nn import cudnn, recurrence
from bilstm_jax.nn.lstm import BiLSTM, register_layer_impl

LAYER = functools.partial(cudnn.lstm_layer_cudnn, lstm=cudnn.reference_lstm)
register_layer_impl('cudnn_on_reference', LAYER)


def _rel(a, b):
  return float(jnp.max(jnp.abs(a - b))) / max(float(jnp.max(jnp.abs(a))), 1e-6)


@pytest.mark.parametrize('d', [1, 2])
@pytest.mark.parametrize('shape', [(7, 4, 3, 5), (1, 1, 1, 1)])
def test_layer_matches_the_reference_layer_with_lengths(d, shape):
  t, b, f, h = shape
  ks = jax.random.split(jax.random.key(0), 7)
  x = jax.random.normal(ks[0], (t, b, f))
  lengths = jnp.asarray([0, t, max(t - 3, 1), 1][:b])
  valid = jnp.arange(t)[:, None] < lengths[None, :]
  args = (
    0.4 * jax.random.normal(ks[1], (d, f, 4 * h)),
    0.4 * jax.random.normal(ks[2], (d, 4 * h)),
    0.4 * jax.random.normal(ks[3], (d, h, 4 * h)),
    jax.random.normal(ks[4], (d, b, h)),
    jax.random.normal(ks[5], (d, b, h)),
  )

  def loss(layer, x, *args):
    hs, (h_n, c_n) = layer(x, valid, *args, None)
    return jnp.sum(jnp.sin(hs)) + jnp.sum(h_n * c_n)

  out_ref = recurrence.lstm_layer_reference(x, valid, *args, None)
  out = LAYER(x, valid, *args, None)
  for a, c in zip(jax.tree.leaves(out_ref), jax.tree.leaves(out), strict=True):
    np.testing.assert_allclose(a, c, atol=1e-6, rtol=0)
  argnums = tuple(range(1, 7))
  g_ref = jax.grad(loss, argnums)(recurrence.lstm_layer_reference, x, *args)
  g = jax.grad(loss, argnums)(LAYER, x, *args)
  for a, c in zip(g_ref, g, strict=True):
    assert _rel(a, c) < 1e-5


def test_stacked_bilstm_with_lengths_matches_the_reference():
  x = jax.random.normal(jax.random.key(1), (3, 6, 4))
  lengths = jnp.asarray([6, 2, 0])
  ref = BiLSTM(5, num_layers=2, impl='reference')
  params = ref.init(jax.random.key(2), x)
  out_ref = ref.apply(params, x, lengths)
  out = ref.clone(impl='cudnn_on_reference').apply(params, x, lengths)
  for a, c in zip(jax.tree.leaves(out_ref), jax.tree.leaves(out), strict=True):
    np.testing.assert_allclose(a, c, atol=1e-6, rtol=0)


def test_pack_weights_puts_torch_layout_where_jax_unpacks_it():
  d, f, h = 2, 3, 2
  w_ih = jnp.arange(d * f * 4 * h, dtype=jnp.float32).reshape(d, f, 4 * h)
  w_hh = -jnp.arange(d * h * 4 * h, dtype=jnp.float32).reshape(d, h, 4 * h)
  bias = jnp.arange(d * 4 * h, dtype=jnp.float32).reshape(d, 4 * h) + 0.5
  flat = cudnn.pack_weights(w_ih, bias, w_hh)
  assert flat.shape == (jax.experimental.rnn.get_num_params_in_lstm(f, h, 1, True),)
  got_ih, got_hh, got_bih, got_bhh = jax.experimental.rnn.unpack_lstm_weights(flat, f, h, 1, True)
  for k in range(d):
    np.testing.assert_array_equal(got_ih[k], w_ih[k].T)
    np.testing.assert_array_equal(got_hh[k], w_hh[k].T)
    np.testing.assert_array_equal(got_bih[k], bias[k])
    np.testing.assert_array_equal(got_bhh[k], 0.0)


def test_the_call_binds_to_jax_experimental_rnn_lstm():
  calls = []

  def record(*args, **kwargs):
    calls.append((args, kwargs))
    return cudnn.reference_lstm(*args, **kwargs)

  x, valid = jnp.ones((3, 2, 4)), jnp.ones((3, 2), bool)
  w_ih, bias, w_hh = jnp.ones((2, 4, 20)), jnp.ones((2, 20)), jnp.ones((2, 5, 20))
  h0 = jnp.zeros((2, 2, 5))
  cudnn.lstm_layer_cudnn(x, valid, w_ih, bias, w_hh, h0, h0, None, lstm=record)
  ((args, kwargs),) = calls
  for fn in (jax.experimental.rnn.lstm, cudnn.reference_lstm):
    bound = inspect.signature(fn).bind(*args, **kwargs).arguments
    assert bound['seq_lengths'].dtype == jnp.int32  # the only dtype cuDNN's call takes
    assert bound['x'].shape == (2, 3, 4)  # batch first


def test_cudnn_refuses_bfloat16_and_other_backends_by_name():
  x = jnp.ones((2, 3, 4))
  model = BiLSTM(5, impl='cudnn')
  with pytest.raises(ValueError, match='float32 only; got dtype bfloat16'):
    model.clone(dtype=jnp.bfloat16).init(jax.random.key(0), x)
  backend = jax.default_backend()
  if backend != 'gpu':  # benchmarks/gpu_check.sh runs this file on a GPU too
    with pytest.raises(
      ValueError, match=f"needs a GPU backend; JAX's default backend is '{backend}'"
    ):
      model.init(jax.random.key(0), x)


@pytest.mark.skipif(jax.default_backend() != 'gpu', reason='cuDNN runs on a GPU only')
@pytest.mark.parametrize('num_layers', [1, 2])
def test_cudnn_on_the_gpu_matches_the_reference_scan(num_layers):
  x = jax.random.normal(jax.random.key(3), (4, 9, 6))
  lengths = jnp.asarray([9, 5, 1, 0])
  ref = BiLSTM(7, num_layers=num_layers, impl='reference')
  params = ref.init(jax.random.key(4), x)

  def loss(module, params, x):
    y, (h_n, c_n) = module.apply(params, x, lengths)
    return jnp.sum(jnp.sin(y)) + jnp.sum(h_n * c_n)

  with jax.default_matmul_precision('highest'):  # no TF32 on either side
    for impl in ('reference', 'cudnn'):
      out = ref.clone(impl=impl).apply(params, x, lengths)
      grads = jax.grad(loss, argnums=(1, 2))(ref.clone(impl=impl), params, x)
      if impl == 'reference':
        want, want_grads = out, grads
  for a, c in zip(jax.tree.leaves(want), jax.tree.leaves(out), strict=True):
    np.testing.assert_allclose(a, c, atol=1e-5, rtol=0)
  for a, c in zip(jax.tree.leaves(want_grads), jax.tree.leaves(grads), strict=True):
    assert _rel(a, c) < 1e-4
