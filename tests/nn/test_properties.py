"""Property-based tests (hypothesis) of BiLSTM's invariants, over every layer implementation.

Each example draws an implementation, layers, directions, batch, time and lengths (0 of
both included), parameters and inputs. Shapes come from a few values so that examples
share compiled programs (`_apply` is jitted once per module and shape); the numbers vary.
"""

import functools

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import strategies as st

from bilstm_jax.nn.lstm import BiLSTM
from tests.nn.test_lstm import np_lstm

IMPLS = ('reference', 'fused', 'native')
FEATURES, HIDDEN = 3, 2
SETTINGS = hypothesis.settings(max_examples=12, deadline=None, derandomize=True)


@functools.cache
def _module(impl: str, num_layers: int, bidirectional: bool) -> BiLSTM:
  return BiLSTM(HIDDEN, num_layers=num_layers, bidirectional=bidirectional, impl=impl)


@functools.cache
def _apply(module: BiLSTM):
  return jax.jit(module.apply)


def _params(module: BiLSTM, rng: np.random.Generator, scale: float = 0.7) -> dict:
  """Parameters larger than the default init, so that mistakes show in the numbers."""
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 1, FEATURES)))
  return jax.tree.map(lambda a: scale * rng.standard_normal(a.shape, np.float32), shapes['params'])


@st.composite
def cases(draw, bidirectional=None):
  """(module, params, inputs float32[batch, time, F], lengths int32[batch], rng)."""
  impl = draw(st.sampled_from(IMPLS))
  num_layers = draw(st.sampled_from([1, 2]))
  if bidirectional is None:
    bidirectional = draw(st.booleans())
  batch = draw(st.sampled_from([1, 3]))
  time = draw(st.sampled_from([0, 1, 4]))
  lengths = draw(st.lists(st.integers(0, time), min_size=batch, max_size=batch))
  rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
  module = _module(impl, num_layers, bidirectional)
  x = rng.standard_normal((batch, time, FEATURES), np.float32)
  return module, _params(module, rng), x, np.array(lengths, np.int32), rng


def _close(actual, expected, atol=1e-6):
  for a, b in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=0, atol=atol)


@SETTINGS
@hypothesis.given(
  case=cases(),
  extra=st.sampled_from([0, 2]),
  pad_value=st.one_of(
    st.sampled_from([0.0, 1e30, -1e30, 3e38, -3e38]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
  ),
  noise=st.booleans(),
)
def test_padding_never_changes_valid_results(case, extra, pad_value, noise):
  """Whatever sits after a sequence's end (and however much of it) is invisible, and the
  outputs there are exactly zero."""
  module, params, x, lengths, rng = case
  apply = _apply(module)
  y, state = apply({'params': params}, x, lengths)

  batch, time, _ = x.shape
  total = time + extra
  padded = np.zeros((batch, total, FEATURES), np.float32)
  padded[:, :time] = x
  invalid = np.arange(total)[None, :] >= lengths[:, None]
  fill = np.full(padded.shape, pad_value, np.float32)
  if noise:  # varying values, not only a constant
    fill *= rng.uniform(-1, 1, fill.shape).astype(np.float32)
  padded[invalid] = fill[invalid]
  y_pad, state_pad = apply({'params': params}, padded, lengths)

  y, y_pad = np.asarray(y), np.asarray(y_pad)
  valid = ~invalid[:, :time]
  np.testing.assert_allclose(y_pad[:, :time][valid], y[valid], rtol=0, atol=1e-6)
  np.testing.assert_array_equal(y_pad[invalid], 0.0)
  np.testing.assert_array_equal(y[~valid], 0.0)
  _close(state_pad, state)


def _reverse_prefixes(a: np.ndarray, lengths: np.ndarray) -> np.ndarray:
  """a[b, :length_b] reversed along time for every b; what follows is left as it is."""
  out = a.copy()
  for b, n in enumerate(lengths):
    out[b, :n] = a[b, :n][::-1]
  return out


def _swap_directions(params: dict) -> dict:
  """The parameters of the same network with the two directions' roles exchanged: each
  layer's direction axis flipped, and in layers > 0 the input rows of the previous layer's
  forward and backward units exchanged with it."""
  out = {}
  for name, p in params.items():
    p = {k: np.asarray(v)[::-1] for k, v in p.items()}
    if name != 'layer_0':
      p['w_ih'] = np.concatenate([p['w_ih'][:, HIDDEN:], p['w_ih'][:, :HIDDEN]], axis=1)
    out[name] = p
  return out


@SETTINGS
@hypothesis.given(case=cases(bidirectional=True))
def test_reversing_each_valid_prefix_swaps_the_directions(case):
  """The forward outputs on x are the backward outputs on x with each valid prefix reversed
  (reversed back), and vice versa, given parameters with the directions exchanged; so are
  the final states."""
  module, params, x, lengths, _ = case
  apply = _apply(module)
  y, (h_n, c_n) = apply({'params': params}, x, lengths)
  y_rev, (h_rev, c_rev) = apply(
    {'params': _swap_directions(params)}, _reverse_prefixes(x, lengths), lengths
  )
  y_back = _reverse_prefixes(np.asarray(y_rev), lengths)
  np.testing.assert_allclose(y_back[..., :HIDDEN], y[..., HIDDEN:], rtol=0, atol=1e-5)
  np.testing.assert_allclose(y_back[..., HIDDEN:], y[..., :HIDDEN], rtol=0, atol=1e-5)
  # States are ordered (layer 0 fwd, layer 0 bwd, layer 1 fwd, ...): swap within each pair.
  swap = np.arange(h_n.shape[0]).reshape(-1, 2)[:, ::-1].ravel()
  np.testing.assert_allclose(h_rev, np.asarray(h_n)[swap], rtol=0, atol=1e-5)
  np.testing.assert_allclose(c_rev, np.asarray(c_n)[swap], rtol=0, atol=1e-5)


@SETTINGS
@hypothesis.given(case=cases())
def test_a_batch_equals_its_examples_run_one_by_one(case):
  module, params, x, lengths, _ = case
  apply = _apply(module)
  y, (h_n, c_n) = apply({'params': params}, x, lengths)
  for b in range(x.shape[0]):
    y_b, (h_b, c_b) = apply({'params': params}, x[b : b + 1], lengths[b : b + 1])
    np.testing.assert_allclose(y_b[0], y[b], rtol=0, atol=1e-6)
    np.testing.assert_allclose(h_b[:, 0], h_n[:, b], rtol=0, atol=1e-6)
    np.testing.assert_allclose(c_b[:, 0], c_n[:, b], rtol=0, atol=1e-6)


@SETTINGS
@hypothesis.given(case=cases(), with_state=st.booleans())
def test_jit_equals_no_jit(case, with_state):
  module, params, x, lengths, rng = case
  state = None
  if with_state:
    shape = (module.num_layers * module.num_directions, x.shape[0], HIDDEN)
    state = tuple(rng.standard_normal((2, *shape), np.float32))
  eager = module.apply({'params': params}, x, lengths, initial_state=state)
  jitted = _apply(module)({'params': params}, x, lengths, initial_state=state)
  _close(jitted, eager)


@SETTINGS
@hypothesis.given(case=cases(), with_state=st.booleans())
def test_float32_is_close_to_a_float64_loop(case, with_state):
  """Against `np_lstm`: the LSTM equations in float64 numpy, step by step."""
  module, params, x, lengths, rng = case
  state = None
  if with_state:
    shape = (module.num_layers * module.num_directions, x.shape[0], HIDDEN)
    state = tuple(rng.standard_normal((2, *shape), np.float32))
  got = _apply(module)({'params': params}, x, lengths, initial_state=state)
  want = np_lstm(params, x, lengths, initial_state=state)
  _close(got, want, atol=2e-5)


@SETTINGS
@hypothesis.given(case=cases(), members=st.sampled_from([2, 3]))
def test_vmap_over_members_equals_a_loop(case, members):
  """An ensemble's members (stacked parameters) under `jax.vmap` give each member's own
  results."""
  module, params, x, lengths, rng = case
  stacked = jax.tree.map(
    lambda a: np.stack([a, *(0.7 * rng.standard_normal((members - 1, *a.shape), np.float32))]),
    params,
  )
  run = _vmapped(module)
  ys, (hs, cs) = run(stacked, x, lengths)
  for m in range(members):
    member = jax.tree.map(lambda a, m=m: a[m], stacked)
    y, (h_n, c_n) = _apply(module)({'params': member}, x, lengths)
    np.testing.assert_allclose(ys[m], y, rtol=0, atol=1e-6)
    np.testing.assert_allclose(hs[m], h_n, rtol=0, atol=1e-6)
    np.testing.assert_allclose(cs[m], c_n, rtol=0, atol=1e-6)


@functools.cache
def _vmapped(module: BiLSTM):
  return jax.jit(
    jax.vmap(lambda p, x, lengths: module.apply({'params': p}, x, lengths), (0, None, None))
  )
