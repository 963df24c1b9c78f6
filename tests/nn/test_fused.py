"""The hand-differentiated recurrences against autodiff and torch.nn.LSTM.

`impl='fused'` runs its loops as `lax.scan`s, `impl='native'` in the CPU kernel
(`bilstm_jax.nn.native`); every test here runs both.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilstm_jax.nn import fused, native, recurrence
from bilstm_jax.nn.lstm import BiLSTM

B, T, F, H = 3, 7, 4, 5
LENGTHS = np.array([0, 4, T], np.int32)
FAST = ['fused', 'native']
LAYERS = {'fused': fused.lstm_layer_fused, 'native': fused.lstm_layer_native}


def _inputs(seed=0):
  k1, k2, k3, k4 = jax.random.split(jax.random.key(seed), 4)
  return k1, jax.random.normal(k2, (B, T, F)), k3, k4


def _loss(module, params, x, lengths, state):
  y, (h_n, c_n) = module.apply(params, x, lengths, state)
  # Weights that differ per element, so every output position reaches the gradient.
  wy = jnp.sin(jnp.arange(y.size, dtype=jnp.float32)).reshape(y.shape)
  return jnp.sum(wy * y) + jnp.sum(jnp.cos(h_n) * h_n) + 0.5 * jnp.sum(c_n * c_n)


def _assert_rel(a, b, rtol):
  for (path, x), y in zip(jax.tree.leaves_with_path(a), jax.tree.leaves(b), strict=True):
    scale = max(float(jnp.max(jnp.abs(x))), 1e-6)
    err = float(jnp.max(jnp.abs(x - y))) / scale
    assert err < rtol, f'{jax.tree_util.keystr(path)}: relative error {err:.2e}'


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('num_layers', [1, 2])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_matches_reference_values_and_gradients(num_layers, bidirectional, impl):
  k_init, x, k_h, k_c = _inputs()
  d = 2 if bidirectional else 1
  state = (
    jax.random.normal(k_h, (num_layers * d, B, H)),
    jax.random.normal(k_c, (num_layers * d, B, H)),
  )
  ref = BiLSTM(H, num_layers=num_layers, bidirectional=bidirectional, impl='reference')
  fast = ref.clone(impl=impl)
  params = ref.init(k_init, x)
  lengths = jnp.asarray(LENGTHS)

  out_ref = ref.apply(params, x, lengths, state)
  out_fast = fast.apply(params, x, lengths, state)
  for a, b in zip(jax.tree.leaves(out_ref), jax.tree.leaves(out_fast), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  # Padded outputs are exactly zero; a length-0 sequence keeps its initial state.
  assert not np.any(np.asarray(out_fast[0])[1, 4:])
  np.testing.assert_array_equal(out_fast[1][0][:, 0], state[0][:, 0])

  grad = jax.grad(_loss, argnums=(1, 2, 4))
  g_ref = grad(ref, params, x, lengths, state)
  g_fast = grad(fast, params, x, lengths, state)
  _assert_rel(g_ref, g_fast, 1e-5)


@pytest.mark.parametrize('impl', FAST)
def test_full_length_without_lengths_or_state(impl):
  k_init, x, _, _ = _inputs(1)
  ref = BiLSTM(H, impl='reference')
  params = ref.init(k_init, x)
  grad = jax.grad(_loss, argnums=(1, 2))
  g_ref = grad(ref, params, x, None, None)
  g_fast = grad(ref.clone(impl=impl), params, x, None, None)
  _assert_rel(g_ref, g_fast, 1e-5)


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('d', [1, 2])
@pytest.mark.parametrize(
  'shape',
  [
    (T, B, F, H),
    pytest.param((9, 13, 6, 20), marks=pytest.mark.slow),  # larger shapes: the full suite
    pytest.param((6, 37, 21, 20), marks=pytest.mark.slow),
    (1, 1, 1, 1),
  ],
)
def test_layer_gradients_match_autodiff_directly(d, impl, shape):
  """The raw layer with a mask that is not a prefix (held carry in the middle).

  The second shape exercises the kernel's tails: a batch that is not a whole number of
  row blocks (and is split between threads when there is one direction) and gates that
  are not a whole number of vectors. The third has whole 16 x 16 tiles of the transposed
  [x^T; h_prev^T] writes plus row and column tails; the last is the smallest layer there is.
  """
  t, b, f, h = shape
  ks = jax.random.split(jax.random.key(2), 7)
  x = jax.random.normal(ks[0], (t, b, f))
  mask = jax.random.bernoulli(ks[1], 0.6, (t, b))
  w_ih = 0.4 * jax.random.normal(ks[5], (d, f, 4 * h))
  bias = 0.4 * jax.random.normal(ks[6], (d, 4 * h))
  w_hh = 0.4 * jax.random.normal(ks[2], (d, h, 4 * h))
  h0 = jax.random.normal(ks[3], (d, b, h))
  c0 = jax.random.normal(ks[4], (d, b, h))

  def loss(layer, *args):
    hs, (h_n, c_n) = layer(args[0], mask, *args[1:], None)
    return jnp.sum(jnp.sin(hs)) + jnp.sum(h_n * c_n)

  args = (x, w_ih, bias, w_hh, h0, c0)
  argnums = tuple(range(1, 7))
  g_ref = jax.grad(loss, argnums)(recurrence.lstm_layer_reference, *args)
  g_fast = jax.grad(loss, argnums)(LAYERS[impl], *args)
  _assert_rel(g_ref, g_fast, 1e-5)
  out_ref = recurrence.lstm_layer_reference(x, mask, *args[1:], None)
  out_fast = LAYERS[impl](x, mask, *args[1:], None)
  for a, b in zip(jax.tree.leaves(out_ref), jax.tree.leaves(out_fast), strict=True):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)

  # Forward mode: the tangent recurrence against autodiff of the plain scan.
  tangents = tuple(jnp.cos(jnp.arange(a.size, dtype=jnp.float32)).reshape(a.shape) for a in args)

  def jvp(layer):
    return jax.jvp(lambda *a: layer(a[0], mask, *a[1:], None), args, tangents)[1]

  _assert_rel(jvp(recurrence.lstm_layer_reference), jvp(LAYERS[impl]), 1e-5)


@pytest.mark.parametrize('impl', FAST)
def test_jit_vmap_and_grad_of_jit(impl):
  """An ensemble vmaps the whole step over a member axis; results equal separate runs."""
  k_init, x, _, _ = _inputs(3)
  model = BiLSTM(H, num_layers=2, impl=impl)
  members = 3
  params = jax.vmap(lambda k: model.init(k, x))(jax.random.split(k_init, members))
  lengths = jnp.asarray(LENGTHS)

  # x is an argument, not a closed-over constant: BiLSTM's input check reads concrete
  # values, and a constant turns into a tracer inside jit.
  def loss(p, x):
    return _loss(model, p, x, lengths, None)

  step = jax.jit(jax.vmap(jax.value_and_grad(loss), in_axes=(0, None)))
  values, grads = step(params, x)
  grad_of_jit = jax.grad(jax.jit(loss))
  for m in range(members):
    p_m = jax.tree.map(lambda a, m=m: a[m], params)
    np.testing.assert_allclose(values[m], loss(p_m, x), rtol=1e-6)
    _assert_rel(grad_of_jit(p_m, x), jax.tree.map(lambda a, m=m: a[m], grads), 1e-5)


@functools.cache
def _second_order(impl):
  """A Hessian-vector product (forward over reverse) and a gradient of a gradient
  (reverse over reverse, as meta-learning takes) of `_loss` for a 2-layer BiLSTM, with
  respect to the parameters, the inputs and the initial states."""
  k_init, x, k_h, k_c = _inputs(5)
  model = BiLSTM(H, num_layers=2, impl=impl)
  params = model.init(k_init, x)
  state = (jax.random.normal(k_h, (4, B, H)), jax.random.normal(k_c, (4, B, H)))
  lengths = jnp.asarray(LENGTHS)
  primals = (params, x, state)
  tangents = jax.tree.map(
    lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), primals
  )

  def grad(p, x, s):
    return jax.grad(_loss, argnums=(1, 2, 4))(model, p, x, lengths, s)

  @jax.jit
  def both(primals, tangents):
    hvp = jax.jvp(grad, primals, tangents)[1]
    of_grad = jax.grad(
      lambda *a: sum(jnp.sum(jnp.sin(g)) for g in jax.tree.leaves(grad(*a))), (0, 1, 2)
    )
    return hvp, of_grad(*primals)

  return both(primals, tangents)


@pytest.mark.parametrize('impl', FAST)
@pytest.mark.parametrize('num_layers', [1, 2])
def test_forward_mode_matches_the_reference(impl, num_layers):
  """`jax.jvp` and `jax.jacfwd` (forward mode) of the module, with lengths, under jit and
  vmap: the custom JVP's tangent recurrence, not the backward pass."""
  k_init, x, k_h, k_c = _inputs(6)
  ref = BiLSTM(H, num_layers=num_layers, impl='reference')
  params = ref.init(k_init, x)
  state = tuple(jax.random.normal(k, (2 * num_layers, B, H)) for k in (k_h, k_c))
  lengths = jnp.asarray(LENGTHS)
  primals = (params, x, state)
  tangents = jax.tree.map(
    lambda a: jnp.sin(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), primals
  )

  def jvp(module):
    run = jax.jit(lambda p, t: jax.jvp(lambda *a: module.apply(a[0], a[1], lengths, a[2]), p, t))
    out, tangent = run(primals, tangents)
    batched = jax.vmap(run, in_axes=(None, 0))(
      primals, jax.tree.map(lambda t: jnp.stack([t, -2 * t]), tangents)
    )
    _assert_rel(
      jax.tree.map(lambda t: -2 * t, tangent), jax.tree.map(lambda t: t[1], batched[1]), 1e-5
    )
    jac = jax.jacfwd(lambda x: jnp.sum(module.apply(params, x, lengths)[0], axis=(1, 2)))(x)
    return out, tangent, jac

  _assert_rel(jvp(ref), jvp(ref.clone(impl=impl)), 1e-5)


@pytest.mark.parametrize('impl', FAST)
def test_rematerialisation_gives_the_same_gradients(impl):
  """`jax.checkpoint` around the loss and `nn.remat` around the module (the README says both
  work): the forward pass runs again in the backward, the gradients stay the same."""
  k_init, x, _, _ = _inputs(8)
  model = BiLSTM(H, num_layers=2, impl=impl)
  params = model.init(k_init, x)
  lengths = jnp.asarray(LENGTHS)

  def loss(p, x, module=model):
    return _loss(module, p, x, lengths, None)

  want = jax.grad(loss, (0, 1))(params, x)
  _assert_rel(want, jax.grad(jax.checkpoint(loss), (0, 1))(params, x), 1e-6)
  remat = nn.remat(BiLSTM)(H, num_layers=2, impl=impl)
  _assert_rel(want, jax.grad(lambda p, x: loss(p, x, remat), (0, 1))(params, x), 1e-6)


@pytest.mark.parametrize('impl', FAST)
def test_the_transpose_of_the_gradient_is_the_forward_mode(impl):
  """The two primitives of `linear_pair` transpose into each other both ways."""
  ks = jax.random.split(jax.random.key(9), 7)
  x = jax.random.normal(ks[0], (T, B, F))
  mask = jax.random.bernoulli(ks[1], 0.7, (T, B))
  shapes = ((2, F, 4 * H), (2, 4 * H), (2, H, 4 * H), (2, B, H), (2, B, H))
  args = (x, *(0.5 * jax.random.normal(k, s) for k, s in zip(ks[2:], shapes, strict=True)))
  tangents = tuple(jnp.cos(jnp.arange(a.size, dtype=jnp.float32)).reshape(a.shape) for a in args)

  def layer(*a):
    return LAYERS[impl](a[0], mask, *a[1:], None)

  out, vjp = jax.vjp(layer, *args)
  (transposed,) = jax.linear_transpose(vjp, out)(tangents)
  _assert_rel(jax.jvp(layer, args, tangents)[1], transposed, 1e-5)


@pytest.mark.parametrize('impl', FAST)
def test_second_order_derivatives_match_the_reference(impl):
  """Differentiating the custom gradient again (the kernel through its scan version)."""
  _assert_rel(_second_order('reference'), _second_order(impl), 1e-5)


def test_bfloat16_matmuls_close_to_float32():
  k_init, x, _, _ = _inputs(4)
  model = BiLSTM(H, impl='fused')
  params = model.init(k_init, x)
  lengths = jnp.asarray(LENGTHS)
  g32 = jax.grad(_loss, argnums=1)(model, params, x, lengths, None)
  g16 = jax.grad(_loss, argnums=1)(model.clone(dtype=jnp.bfloat16), params, x, lengths, None)
  _assert_rel(g32, g16, 5e-2)


@pytest.mark.parametrize('num_layers', [1, 2])
def test_native_bfloat16_matches_the_scan_in_bfloat16(num_layers):
  """Both round the same matmul operands to bfloat16; only the order of the float32 sums
  differs (here within 1e-6). Without the rounding the kernel would be 2-5e-3 away, as
  far as float32 is."""
  k_init, x, _, _ = _inputs(6)
  lengths = jnp.asarray(LENGTHS)
  model = BiLSTM(H, num_layers=num_layers, impl='fused', dtype=jnp.bfloat16)
  params = model.init(k_init, x)
  grad = jax.value_and_grad(_loss, argnums=1)
  scan = grad(model, params, x, lengths, None)
  kernel = grad(model.clone(impl='native'), params, x, lengths, None)
  kernel32 = grad(model.clone(impl='native', dtype=jnp.float32), params, x, lengths, None)
  _assert_rel(scan, kernel, 1e-4)
  with pytest.raises(AssertionError):  # bfloat16 was really used
    _assert_rel(scan, kernel32, 1e-4)


def test_native_takes_float32_or_bfloat16_only():
  k_init, x, _, _ = _inputs(4)
  model = BiLSTM(H, impl='native', dtype=jnp.float16)
  with pytest.raises(ValueError, match='float32 or bfloat16 matmul operands; got float16'):
    model.init(k_init, x)


def test_auto_runs_the_kernel_on_one_cpu_device_and_the_scan_for_export():
  _, x, _, _ = _inputs(5)
  model = BiLSTM(H)  # impl='auto'
  params = model.init(jax.random.key(0), x)

  def hlo():
    return jax.jit(lambda p, x: model.apply(p, x)).lower(params, x).as_text()

  assert native.preferred()  # this test suite runs JAX on one CPU device
  assert 'bilstm_jax_lstm_fwd' in hlo()
  with native.disabled():
    assert 'bilstm_jax_lstm_fwd' not in hlo()

  def hlo_in(dtype):
    return jax.jit(lambda p, x: model.clone(dtype=dtype).apply(p, x)).lower(params, x).as_text()

  assert 'bilstm_jax_lstm_fwd' in hlo_in(jnp.bfloat16)
  assert 'bilstm_jax_lstm_fwd' not in hlo_in(jnp.float16)


@pytest.mark.parametrize('impl', FAST)
def test_matches_torch_lstm_with_packed_sequences(impl):
  torch = pytest.importorskip('torch')
  num_layers, lengths = 2, np.array([3, T, 1], np.int64)
  torch.manual_seed(0)
  net = torch.nn.LSTM(F, H, num_layers=num_layers, bidirectional=True, batch_first=True)
  x_np = np.random.default_rng(0).standard_normal((B, T, F)).astype(np.float32)

  sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}
  params = {'params': {}}
  for layer in range(num_layers):
    names = [f'l{layer}', f'l{layer}_reverse']
    params['params'][f'layer_{layer}'] = {
      'w_ih': jnp.stack([sd[f'weight_ih_{n}'].T for n in names]),
      'w_hh': jnp.stack([sd[f'weight_hh_{n}'].T for n in names]),
      'b_ih': jnp.stack([sd[f'bias_ih_{n}'] for n in names]),
      'b_hh': jnp.stack([sd[f'bias_hh_{n}'] for n in names]),
    }
  model = BiLSTM(H, num_layers=num_layers, impl=impl)
  rng = np.random.default_rng(1)
  wy = rng.standard_normal((B, T, 2 * H)).astype(np.float32)
  wh = rng.standard_normal((2 * num_layers, B, H)).astype(np.float32)

  def loss(params, x):
    y, (h_n, c_n) = model.apply(params, x, jnp.asarray(lengths, jnp.int32))
    return jnp.sum(y * wy) + jnp.sum((h_n + c_n) * wh), y

  (_, y), (g_params, g_x) = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
    params, jnp.asarray(x_np)
  )

  x_t = torch.tensor(x_np, requires_grad=True)
  packed = torch.nn.utils.rnn.pack_padded_sequence(
    x_t, torch.tensor(lengths), batch_first=True, enforce_sorted=False
  )
  out, (h_n, c_n) = net(packed)
  y_t, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
  (torch.sum(y_t * torch.tensor(wy)) + torch.sum((h_n + c_n) * torch.tensor(wh))).backward()

  np.testing.assert_allclose(y, y_t.detach().numpy(), atol=1e-5, rtol=0)
  _assert_rel(g_x, x_t.grad.numpy(), 1e-4)
  for layer in range(num_layers):
    p = g_params['params'][f'layer_{layer}']
    for i, suffix in enumerate(['', '_reverse']):
      n = f'l{layer}{suffix}'
      grads = dict(net.named_parameters())
      _assert_rel(p['w_ih'][i], grads[f'weight_ih_{n}'].grad.numpy().T, 1e-4)
      _assert_rel(p['w_hh'][i], grads[f'weight_hh_{n}'].grad.numpy().T, 1e-4)
      _assert_rel(p['b_ih'][i], grads[f'bias_ih_{n}'].grad.numpy(), 1e-4)
      _assert_rel(p['b_hh'][i], grads[f'bias_hh_{n}'].grad.numpy(), 1e-4)


def test_native_nested_vmap_over_members_and_inputs_matches_separate_calls():
  """The kernel takes vmapped members as a leading dimension (nested vmaps included)."""
  _, x, _, _ = _inputs(6)
  model = BiLSTM(H, impl='native')
  keys = jax.random.split(jax.random.key(7), 4).reshape(2, 2)
  params = jax.vmap(jax.vmap(lambda k: model.init(k, x)))(keys)
  xs = x + jax.random.normal(jax.random.key(8), (2, 2, *x.shape))  # a batch per member
  lengths = jnp.asarray(LENGTHS)

  def loss(p, x):
    return _loss(model, p, x, lengths, None)

  values, grads = jax.jit(jax.vmap(jax.vmap(jax.value_and_grad(loss))))(params, xs)
  for i in range(2):
    for j in range(2):
      p_ij = jax.tree.map(lambda a, i=i, j=j: a[i, j], params)
      value, grad = jax.value_and_grad(loss)(p_ij, xs[i, j])
      np.testing.assert_allclose(values[i, j], value, rtol=1e-5)  # float32 sum order
      _assert_rel(grad, jax.tree.map(lambda a, i=i, j=j: a[i, j], grads), 1e-5)
