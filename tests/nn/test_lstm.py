"""BiLSTM against a step-by-step numpy loop, its padding invariants, options and errors."""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilstm_jax.nn.lstm import BiLSTM

BATCH, TIME, FEATURES, HIDDEN = 3, 5, 4, 3


def np_lstm(params, x, lengths=None, initial_state=None):
  """A float64 loop over one LSTM cell, sequence by sequence, step by step.

  Written from the LSTM equations (PyTorch gate order i, f, g, o), independently of
  `bilstm_jax.nn.recurrence`. x: [B, T, F]; returns y [B, T, D*H] and (h_n, c_n) [L*D, B, H].
  """
  x = np.asarray(x, np.float64)
  batch, time, _ = x.shape
  lengths = np.full(batch, time) if lengths is None else np.asarray(lengths)
  num_layers = len(params)
  dirs, hidden = np.shape(params['layer_0']['w_hh'])[:2]
  if initial_state is None:
    h0 = c0 = np.zeros((num_layers * dirs, batch, hidden))
  else:
    h0, c0 = (np.asarray(s, np.float64) for s in initial_state)
  sigmoid = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
  h_n, c_n = np.zeros_like(h0), np.zeros_like(c0)
  for layer in range(num_layers):
    p = {k: np.asarray(v, np.float64) for k, v in params[f'layer_{layer}'].items()}
    y = np.zeros((batch, time, dirs * hidden))
    for d in range(dirs):
      s = layer * dirs + d
      for b in range(batch):
        h, c = h0[s, b], c0[s, b]
        steps = range(lengths[b]) if d == 0 else reversed(range(lengths[b]))
        for t in steps:
          z = x[b, t] @ p['w_ih'][d] + p['b_ih'][d] + h @ p['w_hh'][d] + p['b_hh'][d]
          i, f, g, o = np.split(z, 4)
          c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
          h = sigmoid(o) * np.tanh(c)
          y[b, t, d * hidden : (d + 1) * hidden] = h
        h_n[s, b], c_n[s, b] = h, c
    x = y
  return x, (h_n, c_n)


# Random numbers come from numpy: eager jax.random calls would each compile, slowly.


def random_params(seed, num_layers, bidirectional, features=FEATURES, scale=0.6):
  """Params larger than the default init so that mistakes show up in the numbers."""
  module = BiLSTM(HIDDEN, num_layers=num_layers, bidirectional=bidirectional)
  x = jnp.zeros((1, 1, features))
  shapes = jax.eval_shape(module.init, jax.random.key(0), x)['params']
  rng = np.random.default_rng(seed)
  params = jax.tree.map(lambda a: scale * rng.standard_normal(a.shape, np.float32), shapes)
  return module, params


def normal(shape, seed=0):
  return np.random.default_rng(seed).standard_normal(shape, np.float32)


def inputs(seed=0, batch=BATCH, time=TIME, features=FEATURES):
  return normal((batch, time, features), seed)


@pytest.mark.parametrize('lengths', [None, [TIME, 2, 0]], ids=['full', 'lengths'])
@pytest.mark.parametrize('bidirectional', [False, True], ids=['uni', 'bi'])
@pytest.mark.parametrize('num_layers', [1, 2])
def test_matches_numpy_loop(num_layers, bidirectional, lengths):
  module, params = random_params(1, num_layers, bidirectional)
  x = inputs()
  lengths = None if lengths is None else jnp.array(lengths)
  y, (h_n, c_n) = module.apply({'params': params}, x, lengths)
  y_ref, (h_ref, c_ref) = np_lstm(params, x, lengths)
  d = 2 if bidirectional else 1
  assert y.shape == (BATCH, TIME, d * HIDDEN) and y.dtype == jnp.float32
  assert h_n.shape == c_n.shape == (num_layers * d, BATCH, HIDDEN)
  np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(c_n, c_ref, rtol=0, atol=1e-5)
  assert np.abs(y_ref).max() > 0.1  # not a vacuous comparison


@pytest.mark.parametrize('bidirectional', [False, True], ids=['uni', 'bi'])
def test_initial_state_is_honoured(bidirectional):
  module, params = random_params(2, 2, bidirectional)
  d = 2 if bidirectional else 1
  state = (normal((2 * d, BATCH, HIDDEN), 3), normal((2 * d, BATCH, HIDDEN), 4))
  x, lengths = inputs(), jnp.array([TIME, 3, 0])
  y, (h_n, c_n) = module.apply({'params': params}, x, lengths, initial_state=state)
  y_ref, (h_ref, c_ref) = np_lstm(params, x, lengths, initial_state=state)
  np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(h_n, h_ref, rtol=0, atol=1e-5)
  np.testing.assert_allclose(c_n, c_ref, rtol=0, atol=1e-5)
  # An empty sequence hands its initial state straight through, in every layer/direction.
  np.testing.assert_array_equal(h_n[:, 2], state[0][:, 2])
  np.testing.assert_array_equal(c_n[:, 2], state[1][:, 2])
  y_zero, _ = module.apply({'params': params}, x, lengths)
  assert np.abs(y - y_zero).max() > 1e-3


def test_length_zero_gives_zeros():
  module, params = random_params(4, 2, True)
  x = inputs()
  y, (h_n, c_n) = module.apply({'params': params}, x, jnp.array([0, TIME, 0]))
  for b in (0, 2):
    np.testing.assert_array_equal(y[b], 0.0)
    np.testing.assert_array_equal(h_n[:, b], 0.0)
    np.testing.assert_array_equal(c_n[:, b], 0.0)
  assert np.all(np.abs(y[1]) > 0)
  assert np.all(np.abs(c_n[:, 1]) > 0)


@pytest.mark.parametrize('impl', ['reference', 'fused', 'native'])
def test_empty_time_axis_passes_the_initial_state_through(impl):
  """time = 0: no outputs, and the final states are the initial ones, in every impl."""
  _, params = random_params(13, 2, True)
  state = (normal((4, 2, HIDDEN), 1), normal((4, 2, HIDDEN), 2))
  module = BiLSTM(HIDDEN, num_layers=2, impl=impl)
  x = np.zeros((2, 0, FEATURES), np.float32)
  y, (h_n, c_n) = module.apply({'params': params}, x, jnp.array([0, 0]), initial_state=state)
  assert y.shape == (2, 0, 2 * HIDDEN) and y.dtype == jnp.float32
  np.testing.assert_array_equal(h_n, state[0])
  np.testing.assert_array_equal(c_n, state[1])


# The padding invariant over random lengths, values, layers and impls: test_properties.py.


def test_padding_never_changes_gradients():
  """Huge padding values must not leak into gradients (no inf * 0 = NaN) nor change them."""
  module, params = random_params(12, 2, True)
  lengths = jnp.array([TIME, 2, 0])
  x = inputs()
  invalid = np.arange(TIME)[None, :] >= np.asarray(lengths)[:, None]
  cotangent = normal((BATCH, TIME, 2 * HIDDEN), 1)

  @jax.jit
  def grads(params, x):
    def loss(params, x):
      y, (h_n, c_n) = module.apply({'params': params}, x, lengths)
      return jnp.sum(y * cotangent) + jnp.sum(h_n) + 2 * jnp.sum(c_n)

    return jax.grad(loss, argnums=(0, 1))(params, x)

  clean = np.where(invalid[..., None], 0.0, x)
  g_params, g_x = grads(params, clean)
  for pad in (3e38, -3e38):
    dirty = np.where(invalid[..., None], np.float32(pad), x)
    g_params_pad, g_x_pad = grads(params, dirty)
    for a, b in zip(jax.tree.leaves(g_params_pad), jax.tree.leaves(g_params), strict=True):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(g_x_pad, g_x, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(g_x_pad)[invalid], 0.0)
  assert np.abs(np.asarray(g_x)[~invalid]).min() > 0


def test_time_major_is_the_transpose():
  module, params = random_params(6, 2, True)
  x, lengths = inputs(), jnp.array([TIME, 1, 3])
  y, (h_n, c_n) = module.apply({'params': params}, x, lengths)
  tm = BiLSTM(HIDDEN, num_layers=2, time_major=True)
  y_tm, (h_tm, c_tm) = tm.apply({'params': params}, jnp.swapaxes(x, 0, 1), lengths)
  assert y_tm.shape == (TIME, BATCH, 2 * HIDDEN)
  np.testing.assert_allclose(y_tm, jnp.swapaxes(y, 0, 1), rtol=0, atol=1e-6)
  np.testing.assert_allclose(h_tm, h_n, rtol=0, atol=1e-6)
  np.testing.assert_allclose(c_tm, c_n, rtol=0, atol=1e-6)
  # Lengths index the time axis, which is now axis 0: a length > batch is fine, > time is not.
  with pytest.raises(ValueError, match='lengths must be <='):
    tm.apply({'params': params}, jnp.swapaxes(x, 0, 1), jnp.array([TIME + 1, 1, 1]))


# --- Dropout -------------------------------------------------------------------------------


def test_dropout():
  _, params = random_params(7, 2, True)
  x, lengths = inputs(), jnp.array([TIME, 4, 2])
  plain = BiLSTM(HIDDEN, num_layers=2)
  drop = BiLSTM(HIDDEN, num_layers=2, dropout=0.5)
  y, (h_n, c_n) = plain.apply({'params': params}, x, lengths)

  # deterministic=True: dropout is the identity and needs no rng.
  y_det, (h_det, c_det) = drop.apply({'params': params}, x, lengths, deterministic=True)
  np.testing.assert_array_equal(y_det, y)
  np.testing.assert_array_equal(h_det, h_n)

  # deterministic=False needs the 'dropout' rng.
  with pytest.raises(flax.errors.InvalidRngError, match='dropout'):
    drop.apply({'params': params}, x, lengths, deterministic=False)

  @jax.jit
  def run(key, x, lengths):
    return drop.apply({'params': params}, x, lengths, deterministic=False, rngs={'dropout': key})

  y_a, (h_a, c_a) = run(jax.random.key(0), x, lengths)
  y_b, _ = run(jax.random.key(1), x, lengths)
  # Layer 0 is unaffected (dropout acts between layers), layer 1 changes, per rng.
  np.testing.assert_array_equal(h_a[:2], h_n[:2])
  np.testing.assert_array_equal(c_a[:2], c_n[:2])
  assert np.abs(h_a[2:] - h_n[2:]).max() > 1e-3
  assert np.abs(y_a - y).max() > 1e-3
  assert np.abs(y_a - y_b).max() > 1e-3
  np.testing.assert_array_equal(run(jax.random.key(0), x, lengths)[0], y_a)  # same rng, same mask
  # Padding rules still hold with dropout on.
  np.testing.assert_array_equal(y_a[2, 2:], 0.0)


def test_no_dropout_after_last_layer():
  _, params = random_params(8, 2, True)
  x = inputs()
  rngs = {'dropout': jax.random.key(0)}
  # One layer: dropout never applies.
  _, params1 = random_params(8, 1, True)
  one = BiLSTM(HIDDEN, num_layers=1, dropout=0.9)
  y1, _ = one.apply({'params': params1}, x, deterministic=False, rngs=rngs)
  y1_det, _ = one.apply({'params': params1}, x)
  np.testing.assert_array_equal(y1, y1_det)
  # Two layers at rate 0.9: dropping the final outputs would zero ~90% of them and scale the
  # rest by 10, beyond the [-1, 1] range of an LSTM output.
  y2, _ = BiLSTM(HIDDEN, num_layers=2, dropout=0.9).apply(
    {'params': params}, x, deterministic=False, rngs=rngs
  )
  assert np.all(y2 != 0) and np.abs(y2).max() < 1


# --- dtype and initialisers ----------------------------------------------------------------


def test_bfloat16_close_to_float32():
  module, params = random_params(9, 2, True, scale=0.3)
  x, lengths = inputs(), jnp.array([TIME, 3, 1])
  y, (h_n, c_n) = module.apply({'params': params}, x, lengths)
  bf16 = BiLSTM(HIDDEN, num_layers=2, dtype=jnp.bfloat16)
  y16, (h16, c16) = bf16.apply({'params': params}, x, lengths)
  assert y16.dtype == jnp.bfloat16
  assert h16.dtype == c16.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(y16, np.float32), y, rtol=0, atol=2e-2)
  np.testing.assert_allclose(h16, h_n, rtol=0, atol=2e-2)
  np.testing.assert_allclose(c16, c_n, rtol=0, atol=2e-2)
  np.testing.assert_array_equal(np.asarray(y16, np.float32)[2, 1:], 0.0)
  assert np.abs(np.asarray(y16, np.float32) - y).max() > 0  # bf16 was really used


@pytest.mark.parametrize('impl', ['reference', 'fused'])
def test_bfloat16_numbers_are_the_same_in_every_impl(impl):
  """bfloat16 matmul operands in every matmul (the input projection too): each impl gives
  the native kernel's numbers (a float32 projection moves outputs by a bfloat16 ulp)."""
  _, params = random_params(14, 2, True, scale=0.5)
  x, lengths = inputs(3), jnp.array([TIME, 3, 0])
  want = BiLSTM(HIDDEN, num_layers=2, dtype=jnp.bfloat16, impl='native')
  got = BiLSTM(HIDDEN, num_layers=2, dtype=jnp.bfloat16, impl=impl)
  y_want, _ = want.apply({'params': params}, x, lengths)
  y_got, _ = got.apply({'params': params}, x, lengths)
  np.testing.assert_allclose(
    np.asarray(y_got, np.float32), np.asarray(y_want, np.float32), rtol=0, atol=1e-3
  )


def test_custom_initialisers_are_used():
  module = BiLSTM(
    HIDDEN,
    num_layers=2,
    kernel_init=nn.initializers.constant(0.25),
    recurrent_init=nn.initializers.constant(-0.5),
    bias_init=nn.initializers.constant(0.125),
  )
  params = jax.jit(module.init)(jax.random.key(0), inputs())['params']
  for layer in ('layer_0', 'layer_1'):
    np.testing.assert_array_equal(params[layer]['w_ih'], 0.25)
    np.testing.assert_array_equal(params[layer]['w_hh'], -0.5)
    np.testing.assert_array_equal(params[layer]['b_ih'], 0.125)
    np.testing.assert_array_equal(params[layer]['b_hh'], 0.125)


def test_one_custom_initialiser_leaves_the_others_default():
  module = BiLSTM(8, kernel_init=nn.initializers.constant(0.25))
  params = jax.jit(module.init)(jax.random.key(0), inputs())['params']['layer_0']
  np.testing.assert_array_equal(params['w_ih'], 0.25)
  for name in ('w_hh', 'b_ih', 'b_hh'):
    assert np.abs(params[name]).max() <= 1 / np.sqrt(8), name
    assert np.asarray(params[name]).std() > 0.3 / np.sqrt(8), name


def test_default_init():
  module = BiLSTM(8, num_layers=2)
  params = jax.jit(module.init)(jax.random.key(0), inputs())['params']
  bound = 1 / np.sqrt(8)
  assert params['layer_0']['w_ih'].shape == (2, FEATURES, 32)
  assert params['layer_1']['w_ih'].shape == (2, 16, 32)
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    leaf = np.asarray(leaf)
    assert leaf.dtype == np.float32
    assert np.abs(leaf).max() <= bound, path
    assert np.abs(leaf).max() > 0.8 * bound, path  # spread over the range, not ~0
    assert leaf.std() > 0.3 * bound, path
  # The two directions and the two biases are drawn independently.
  w_hh = np.asarray(params['layer_0']['w_hh'])
  assert not np.array_equal(w_hh[0], w_hh[1])
  assert not np.array_equal(params['layer_0']['b_ih'], params['layer_0']['b_hh'])


# --- Errors --------------------------------------------------------------------------------

ERROR_MODULE = BiLSTM(HIDDEN, num_layers=2)
ERROR_PARAMS = jax.tree.map(
  lambda a: np.zeros(a.shape, a.dtype),
  jax.eval_shape(ERROR_MODULE.init, jax.random.key(0), jnp.zeros((1, 1, 5))),
)


def _nan_input():
  x = np.zeros((BATCH, TIME, 5), np.float32)
  x[1, 3, 2] = np.nan
  return x


@pytest.mark.parametrize(
  'x, kwargs, error, match',
  [
    (np.zeros((TIME, 5), np.float32), {}, ValueError, r'rank 3'),
    (np.zeros((1, BATCH, TIME, 5), np.float32), {}, ValueError, r'rank 3'),
    (np.zeros((BATCH, TIME, 5), np.int32), {}, TypeError, r'floating point.*int32'),
    (
      np.zeros((BATCH, TIME, 7), np.float32),
      {},
      ValueError,
      r'inputs have 7 features, but the parameters of layer_0 were initialised for 5',
    ),
    (_nan_input(), {}, ValueError, r'NaN or inf \(first at index \[1, 3, 2\]\)'),
    (
      np.zeros((BATCH, TIME, 5), np.float32),
      {'lengths': jnp.array([TIME, TIME + 1, 1])},
      ValueError,
      rf'lengths must be <= the time axis \({TIME}\); got {TIME + 1} at batch index 1',
    ),
    (
      np.zeros((BATCH, TIME, 5), np.float32),
      {'lengths': jnp.array([2, -1, 1])},
      ValueError,
      r'lengths must be >= 0; got -1',
    ),
    (
      np.zeros((BATCH, TIME, 5), np.float32),
      {'lengths': jnp.array([2.0, 1.0, 1.0])},
      TypeError,
      r'lengths must be an integer array',
    ),
    (
      np.zeros((BATCH, TIME, 5), np.float32),
      {'lengths': jnp.array([2, 1])},
      ValueError,
      rf'lengths must have shape \[batch\]=\({BATCH},\)',
    ),
    (
      np.zeros((BATCH, TIME, 5), np.float32),
      {'lengths': jnp.array([[2, 1, 1]])},
      ValueError,
      r'lengths must have shape',
    ),
    (
      np.zeros((BATCH, TIME, 5), np.float32),
      {'initial_state': (jnp.zeros((4, BATCH, HIDDEN)), jnp.zeros((2, BATCH, HIDDEN)))},
      ValueError,
      r'initial_state must be two arrays of shape \(4, 3, 3\)',
    ),
    (
      np.zeros((BATCH, TIME, 5), np.float32),
      {'initial_state': (jnp.zeros((4, BATCH, 5)), jnp.zeros((4, BATCH, 5)))},
      ValueError,
      r'initial_state must be',
    ),
  ],
  ids=[
    'rank2',
    'rank4',
    'int-inputs',
    'features',
    'nan',
    'too-long',
    'negative',
    'float-lengths',
    'lengths-short',
    'lengths-rank',
    'state-layers',
    'state-hidden',
  ],
)
def test_bad_input_errors(x, kwargs, error, match):
  with pytest.raises(error, match=match):
    ERROR_MODULE.apply(ERROR_PARAMS, x, **kwargs)


def test_inf_input_error():
  x = np.zeros((BATCH, TIME, 5), np.float32)
  x[0, 0, 0] = -np.inf
  with pytest.raises(ValueError, match='NaN or inf'):
    ERROR_MODULE.apply(ERROR_PARAMS, x)


# --- jit -----------------------------------------------------------------------------------


def test_jit_matches_eager():
  module, params = random_params(10, 2, True)
  x, lengths = inputs(), jnp.array([TIME, 2, 0])
  state = (jnp.ones((4, BATCH, HIDDEN)), -jnp.ones((4, BATCH, HIDDEN)))

  @jax.jit
  def run(params, x, lengths, state):
    return module.apply({'params': params}, x, lengths, initial_state=state)

  eager = module.apply({'params': params}, x, lengths, initial_state=state)
  jitted = run(params, x, lengths, state)
  for a, b in zip(jax.tree.leaves(jitted), jax.tree.leaves(eager), strict=True):
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
  # Static (shape and dtype) checks still run while tracing.
  with pytest.raises(ValueError, match='rank 3'):
    run(params, x[0], lengths, state)
  with pytest.raises(TypeError, match='integer'):
    run(params, x, lengths.astype(jnp.float32), state)


def test_jit_with_concrete_inputs_closed_over():
  """Inputs that are constants inside a jitted function (closed over, or made with numpy
  in it) must work too, e.g. `jax.jit(lambda key: module.init(key, np.zeros(...)))`."""
  module, params = random_params(11, 1, True)
  x = inputs()
  eager, _ = module.apply({'params': params}, x)
  jitted, _ = jax.jit(lambda params: module.apply({'params': params}, x))(params)
  np.testing.assert_allclose(jitted, eager, rtol=0, atol=1e-6)
  init = jax.jit(lambda key: module.init(key, np.zeros((1, 2, FEATURES), np.float32)))
  assert init(jax.random.key(0))['params']['layer_0']['w_ih'].shape == (2, FEATURES, 4 * HIDDEN)


# --- Flax NNX ------------------------------------------------------------------------------


def test_runs_in_flax_nnx_through_the_bridge():
  """`nnx.bridge.ToNNX` wraps BiLSTM as an NNX module (the README's example): same
  parameters and outputs as the linen module, dropout from the NNX rng stream, and an
  `nnx.jit` training step with `nnx.Optimizer` that lowers the loss."""
  import optax
  from flax import nnx

  x, lengths = inputs(), jnp.array([TIME, 2, 0])
  lstm = BiLSTM(HIDDEN, num_layers=2, dropout=0.5)
  wrapped = nnx.bridge.ToNNX(lstm, rngs=nnx.Rngs(0, dropout=1))
  nnx.bridge.lazy_init(wrapped, x, lengths)
  params = nnx.to_pure_dict(nnx.state(wrapped, nnx.Param))
  assert set(params) == {'layer_0', 'layer_1'}
  for a, b in zip(
    jax.tree.leaves(wrapped(x, lengths)),
    jax.tree.leaves(lstm.apply({'params': params}, x, lengths)),
    strict=True,
  ):
    np.testing.assert_array_equal(a, b)
  first, second = (wrapped(x, lengths, deterministic=False)[0] for _ in range(2))
  assert not np.allclose(first, second)  # each call draws new dropout masks

  targets = jnp.sin(jnp.arange(BATCH * TIME * 2 * HIDDEN, dtype=jnp.float32))
  targets = (
    targets.reshape(BATCH, TIME, 2 * HIDDEN) * (jnp.arange(TIME) < lengths[:, None])[..., None]
  )
  opt = nnx.Optimizer(wrapped, optax.adam(0.05), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt):
    loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(x, lengths)[0] - targets) ** 2))(model)
    opt.update(model, grads)
    return loss

  losses = [float(step(wrapped, opt)) for _ in range(30)]
  assert losses[-1] < 0.5 * losses[0]
