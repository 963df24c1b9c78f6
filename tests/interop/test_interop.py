"""BiLSTM against torch.nn.LSTM with the same weights, and the state_dict converters."""

import collections
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilstm_jax import interop
from bilstm_jax.nn.lstm import BiLSTM

torch = pytest.importorskip('torch')

BATCH, TIME, FEATURES, HIDDEN = 3, 6, 5, 4
# One full-length sequence and two short ones; not sorted, so packing has to reorder.
LENGTHS = np.array([2, TIME, 1])


def make_torch_lstm(num_layers, bidirectional, input_size=FEATURES, hidden=HIDDEN, seed=0):
  torch.manual_seed(seed)
  return torch.nn.LSTM(
    input_size, hidden, num_layers=num_layers, batch_first=True, bidirectional=bidirectional
  )


def assert_rel_close(actual, desired, rtol, name=''):
  """Elementwise within rtol of the reference's scale (plain rtol breaks near zero)."""
  actual, desired = np.asarray(actual), np.asarray(desired)
  assert actual.shape == desired.shape, name
  scale = max(float(np.abs(desired).max()), 1e-12)
  np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * scale, err_msg=name)


def assert_state_dicts_equal(actual, desired):
  assert list(actual) == list(desired)
  for key in desired:
    assert actual[key].dtype == desired[key].dtype, key
    assert actual[key].shape == desired[key].shape, key
    assert torch.equal(actual[key], desired[key]), key


# --- Parity with torch.nn.LSTM: values and gradients ---------------------------------------


def torch_forward_backward(lstm, x, lengths, cotangents):
  """Outputs, (h_n, c_n) and gradients of the weighted-sum loss, all as numpy."""
  gy, gh, gc = (torch.from_numpy(g) for g in cotangents)
  xt = torch.from_numpy(x).requires_grad_(True)
  if lengths is None:
    y, (h_n, c_n) = lstm(xt)
  else:
    packed = torch.nn.utils.rnn.pack_padded_sequence(
      xt, torch.from_numpy(lengths), batch_first=True, enforce_sorted=False
    )
    y, (h_n, c_n) = lstm(packed)
    y, _ = torch.nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
  lstm.zero_grad()
  loss = (y * gy).sum() + (h_n * gh).sum() + (c_n * gc).sum()
  loss.backward()
  param_grads = {name: p.grad for name, p in lstm.named_parameters()}
  return (
    y.detach().numpy(),
    h_n.detach().numpy(),
    c_n.detach().numpy(),
    xt.grad.numpy(),
    interop.lstm_from_torch(param_grads),
  )


def jax_forward_backward(module, params, x, lengths, cotangents):
  gy, gh, gc = cotangents
  lengths = None if lengths is None else jnp.asarray(lengths)

  def loss_fn(params, x):
    y, (h_n, c_n) = module.apply({'params': params}, x, lengths)
    return jnp.sum(y * gy) + jnp.sum(h_n * gh) + jnp.sum(c_n * gc), (y, h_n, c_n)

  grad_fn = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True))
  (_, (y, h_n, c_n)), (g_params, g_x) = grad_fn(params, jnp.asarray(x))
  return y, h_n, c_n, g_x, g_params


@pytest.mark.parametrize('with_lengths', [False, True], ids=['full', 'lengths'])
@pytest.mark.parametrize('bidirectional', [False, True], ids=['uni', 'bi'])
@pytest.mark.parametrize('num_layers', [1, 3])
def test_matches_torch_values_and_gradients(num_layers, bidirectional, with_lengths):
  lstm = make_torch_lstm(num_layers, bidirectional)
  params = interop.lstm_from_torch(lstm.state_dict())
  module = BiLSTM(HIDDEN, num_layers=num_layers, bidirectional=bidirectional)
  d = 2 if bidirectional else 1
  rng = np.random.default_rng(1)
  x = rng.standard_normal((BATCH, TIME, FEATURES), dtype=np.float32)
  lengths = LENGTHS if with_lengths else None
  cotangents = (
    rng.standard_normal((BATCH, TIME, d * HIDDEN), dtype=np.float32),
    rng.standard_normal((num_layers * d, BATCH, HIDDEN), dtype=np.float32),
    rng.standard_normal((num_layers * d, BATCH, HIDDEN), dtype=np.float32),
  )

  y_t, h_t, c_t, gx_t, gp_t = torch_forward_backward(lstm, x, lengths, cotangents)
  y_j, h_j, c_j, gx_j, gp_j = jax_forward_backward(module, params, x, lengths, cotangents)

  np.testing.assert_allclose(y_j, y_t, rtol=0, atol=1e-5)
  np.testing.assert_allclose(h_j, h_t, rtol=0, atol=1e-5)
  np.testing.assert_allclose(c_j, c_t, rtol=0, atol=1e-5)
  # The comparison is not vacuous: the outputs are far from zero.
  assert np.abs(y_t).max() > 0.05 and np.abs(c_t).min() > 0

  assert jax.tree.structure(gp_j) == jax.tree.structure(gp_t)
  for path, g_j in jax.tree_util.tree_leaves_with_path(gp_j):
    g_t = gp_t[path[0].key][path[1].key]
    assert np.abs(g_t).max() > 0, path
    assert_rel_close(g_j, g_t, 1e-4, name=jax.tree_util.keystr(path))

  if lengths is None:
    assert_rel_close(gx_j, gx_t, 1e-4)
  else:
    valid = np.arange(TIME)[None, :] < lengths[:, None]
    assert_rel_close(np.asarray(gx_j)[valid], gx_t[valid], 1e-4)
    np.testing.assert_array_equal(np.asarray(gx_j)[~valid], 0.0)
    np.testing.assert_array_equal(gx_t[~valid], 0.0)
    np.testing.assert_array_equal(np.asarray(y_j)[~valid], 0.0)


def test_torch_loaded_from_jax_params_matches():
  """The other direction: BiLSTM.init params, loaded into torch, give torch the same outputs."""
  module = BiLSTM(HIDDEN, num_layers=2)
  x = np.random.default_rng(2).standard_normal((BATCH, TIME, FEATURES), dtype=np.float32)
  params = jax.jit(module.init)(jax.random.key(0), x)['params']
  lstm = make_torch_lstm(2, True, seed=123)
  lstm.load_state_dict(interop.lstm_to_torch(params), strict=True)
  y_j, (h_j, c_j) = module.apply({'params': params}, x)
  with torch.no_grad():
    y_t, (h_t, c_t) = lstm(torch.from_numpy(x))
  np.testing.assert_allclose(y_j, y_t.numpy(), rtol=0, atol=1e-5)
  np.testing.assert_allclose(h_j, h_t.numpy(), rtol=0, atol=1e-5)
  np.testing.assert_allclose(c_j, c_t.numpy(), rtol=0, atol=1e-5)


# --- Round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize('bidirectional', [False, True], ids=['uni', 'bi'])
@pytest.mark.parametrize('num_layers', [1, 3])
def test_lstm_round_trip_from_torch(num_layers, bidirectional):
  lstm = make_torch_lstm(num_layers, bidirectional)
  sd = lstm.state_dict()
  params = interop.lstm_from_torch(sd)
  d = 2 if bidirectional else 1
  assert sorted(params) == [f'layer_{k}' for k in range(num_layers)]
  for k in range(num_layers):
    in_features = FEATURES if k == 0 else d * HIDDEN
    p = params[f'layer_{k}']
    assert p['w_ih'].shape == (d, in_features, 4 * HIDDEN)
    assert p['w_hh'].shape == (d, HIDDEN, 4 * HIDDEN)
    assert p['b_ih'].shape == p['b_hh'].shape == (d, 4 * HIDDEN)
    assert all(v.dtype == np.float32 for v in p.values())
    # Direction 1 is PyTorch's _reverse, transposed.
    np.testing.assert_array_equal(p['w_ih'][d - 1], sd[f'weight_ih_l{k}' + '_reverse' * (d - 1)].T)
  back = interop.lstm_to_torch(params)
  assert isinstance(back, collections.OrderedDict)
  assert_state_dicts_equal(back, sd)
  fresh = make_torch_lstm(num_layers, bidirectional, seed=99)
  fresh.load_state_dict(back, strict=True)
  assert_state_dicts_equal(fresh.state_dict(), sd)


@pytest.mark.parametrize('bidirectional', [False, True], ids=['uni', 'bi'])
def test_lstm_round_trip_from_jax(bidirectional):
  module = BiLSTM(HIDDEN, num_layers=2, bidirectional=bidirectional)
  params = jax.jit(module.init)(jax.random.key(3), jnp.zeros((1, 2, FEATURES)))['params']
  sd = interop.lstm_to_torch(params, prefix='rnn.')
  assert all(k.startswith('rnn.') for k in sd)
  back = interop.lstm_from_torch(sd, prefix='rnn.')
  assert jax.tree.structure(back) == jax.tree.structure(params)
  for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params), strict=True):
    np.testing.assert_array_equal(a, b)
  # A full variables dict is accepted as well.
  assert_state_dicts_equal(interop.lstm_to_torch({'params': params}, prefix='rnn.'), sd)


def test_accepts_numpy_state_dict_and_prefix():
  sd = make_torch_lstm(2, True).state_dict()
  model_sd = {f'encoder.{k}': v.numpy() for k, v in sd.items()}
  model_sd['decoder.weight'] = np.zeros((2, 2), np.float32)  # outside the prefix: ignored
  from_numpy = interop.lstm_from_torch(model_sd, prefix='encoder.')
  from_torch = interop.lstm_from_torch(sd)
  for a, b in zip(jax.tree.leaves(from_numpy), jax.tree.leaves(from_torch), strict=True):
    np.testing.assert_array_equal(a, b)
  # Converted arrays are copies: mutating them leaves the torch module untouched.
  from_torch['layer_0']['w_ih'][...] = 0
  assert torch.count_nonzero(sd['weight_ih_l0']) > 0
  assert interop.lstm_config_from_torch(model_sd, 'encoder.') == {
    'input_size': FEATURES,
    'hidden_size': HIDDEN,
    'num_layers': 2,
    'bidirectional': True,
  }


def test_half_precision_tensors_widen_exactly():
  sd = make_torch_lstm(1, True).to(torch.bfloat16).state_dict()
  params = interop.lstm_from_torch(sd)
  assert params['layer_0']['w_hh'].dtype == np.float32
  np.testing.assert_array_equal(params['layer_0']['w_hh'][1], sd['weight_hh_l0_reverse'].float().T)
  # bfloat16 params convert back to bfloat16 tensors.
  bf16 = jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), params)
  assert_state_dicts_equal(interop.lstm_to_torch(bf16), sd)


def test_dense_round_trip_and_parity():
  torch.manual_seed(0)
  linear = torch.nn.Linear(6, 3)
  sd = {f'fc.{k}': v for k, v in linear.state_dict().items()}
  params = interop.dense_from_torch(sd, 'fc.')
  assert params['kernel'].shape == (6, 3) and params['bias'].shape == (3,)
  assert_state_dicts_equal(interop.dense_to_torch(params, 'fc.'), collections.OrderedDict(sd))
  import flax.linen as nn

  x = np.random.default_rng(0).standard_normal((2, 6), dtype=np.float32)
  y_j = nn.Dense(3).apply({'params': params}, x)
  with torch.no_grad():
    y_t = linear(torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(y_j, y_t, rtol=0, atol=1e-6)

  no_bias = torch.nn.Linear(6, 3, bias=False).state_dict()
  params = interop.dense_from_torch(no_bias)
  assert set(params) == {'kernel'}
  assert_state_dicts_equal(interop.dense_to_torch(params), no_bias)


class TutorialModel(torch.nn.Module):
  """The tutorial's torch model."""

  def __init__(self):
    super().__init__()
    self.lstm = torch.nn.LSTM(5, 8, batch_first=True, bidirectional=True)
    self.fc = torch.nn.Linear(16, 1)

  def forward(self, x):
    y, _ = self.lstm(x)
    return self.fc(y)


def test_regressor_round_trip():
  torch.manual_seed(0)
  model = TutorialModel()
  sd = model.state_dict()
  params = interop.regressor_from_torch(sd)
  assert set(params) == {'lstm', 'head'}
  assert params['lstm']['layer_0']['w_ih'].shape == (2, 5, 32)
  assert params['head']['kernel'].shape == (16, 1)
  back = interop.regressor_to_torch(params)
  assert_state_dicts_equal(back, sd)
  TutorialModel().load_state_dict(back, strict=True)

  renamed = {k.replace('fc.', 'head.'): v for k, v in sd.items()}
  params_renamed = interop.regressor_from_torch(renamed, head_prefix='head.')
  np.testing.assert_array_equal(params_renamed['head']['kernel'], params['head']['kernel'])


def test_regressor_matches_bilstm_regressor():
  models = pytest.importorskip('bilstm_jax.models')
  torch.manual_seed(0)
  model = TutorialModel()
  params = interop.regressor_from_torch(model.state_dict())
  flax_model = models.BiLSTMRegressor(hidden_size=8)
  x = np.random.default_rng(0).standard_normal((2, 7, 5), dtype=np.float32)
  init_params = jax.eval_shape(flax_model.init, jax.random.key(0), x)['params']
  assert jax.tree.map(np.shape, params) == jax.tree.map(np.shape, init_params)
  y_j = flax_model.apply({'params': params}, x)
  with torch.no_grad():
    y_t = model(torch.from_numpy(x)).numpy()
  np.testing.assert_allclose(y_j, y_t, rtol=0, atol=1e-5)


# --- Errors --------------------------------------------------------------------------------


def _sd(num_layers=2, bidirectional=True, **kwargs):
  torch.manual_seed(0)
  lstm = torch.nn.LSTM(FEATURES, HIDDEN, num_layers, bidirectional=bidirectional, **kwargs)
  return collections.OrderedDict(lstm.state_dict())


def _without(sd, *keys):
  return collections.OrderedDict((k, v) for k, v in sd.items() if k not in keys)


def _replace(sd, key, value):
  sd = collections.OrderedDict(sd)
  sd[key] = value
  return sd


@pytest.mark.parametrize(
  'state_dict, match',
  [
    (_without(_sd(), 'bias_hh_l1_reverse'), r'Missing keys.*bias_hh_l1_reverse'),
    (_without(_sd(), 'weight_ih_l0'), r'Missing keys.*weight_ih_l0'),
    (
      _without(_sd(3), *(k for k in _sd(3) if '_l1' in k)),
      r'Missing keys.*weight_ih_l1',
    ),
    (_replace(_sd(), 'running_mean', torch.zeros(3)), r'Unexpected keys.*running_mean'),
    (_replace(_sd(), 'weight_ih_l0_backward', torch.zeros(3)), r'Unexpected keys'),
    (_replace(_sd(), 'weight_ih_l01', torch.zeros(3)), r'Unexpected keys.*weight_ih_l01'),
    (_sd(proj_size=2), r'proj_size'),
    (_sd(bias=False), r'bias=False'),
    ({}, r'No LSTM parameters'),
    (
      _replace(_sd(), 'weight_hh_l1', torch.zeros(4 * HIDDEN, HIDDEN + 1)),
      r"'weight_hh_l1' has shape \(16, 5\); expected \(16, 4\)",
    ),
    (
      _replace(_sd(), 'weight_ih_l1_reverse', torch.zeros(4 * HIDDEN, HIDDEN)),
      r"'weight_ih_l1_reverse' has shape \(16, 4\); expected \(16, 8\)",
    ),
    (_replace(_sd(), 'bias_ih_l0', torch.zeros(4 * HIDDEN + 1)), r"'bias_ih_l0' has shape"),
    (_replace(_sd(1, False), 'weight_ih_l0', torch.zeros(4 * HIDDEN)), r'must be matrices'),
    (dict(torch.nn.GRU(FEATURES, HIDDEN).state_dict()), r'GRU'),
  ],
  ids=[
    'missing-bias',
    'missing-weight',
    'missing-layer',
    'unexpected',
    'misnamed',
    'leading-zero',
    'proj_size',
    'no-bias',
    'empty',
    'hh-shape',
    'ih-shape',
    'bias-shape',
    'rank',
    'gru',
  ],
)
def test_lstm_from_torch_errors(state_dict, match):
  with pytest.raises(ValueError, match=match):
    interop.lstm_from_torch(state_dict)


def test_lstm_from_torch_type_errors():
  with pytest.raises(TypeError, match='floating point'):
    interop.lstm_from_torch(_replace(_sd(), 'bias_ih_l0', torch.zeros(16, dtype=torch.int64)))
  with pytest.raises(TypeError, match='floating point'):
    interop.lstm_from_torch(_replace(_sd(), 'bias_ih_l0', np.zeros(16, np.int32)))
  with pytest.raises(TypeError, match='mapping'):
    interop.lstm_from_torch([('weight_ih_l0', torch.zeros(16, 5))])
  with pytest.raises(ValueError, match=r"No LSTM parameters found under prefix 'lstm\.'"):
    interop.lstm_from_torch(_sd(), prefix='lstm.')


def _jax_params(num_layers=2):
  module = BiLSTM(HIDDEN, num_layers=num_layers)
  shapes = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 2, FEATURES)))
  return jax.tree.map(lambda a: np.zeros(a.shape, a.dtype), shapes['params'])


def _set(params, layer, key, value):
  params = jax.tree.map(lambda a: a, params)  # a copy of the containers
  params[layer] = dict(params[layer])
  if value is None:
    del params[layer][key]
  else:
    params[layer][key] = value
  return params


@pytest.mark.parametrize(
  'make, match',
  [
    (lambda p: {k: v for k, v in p.items() if k != 'layer_0'}, r'layer_0\.\.layer_<n-1>'),
    (lambda p: {**p, 'layer_3': p['layer_1']}, r'layer_0\.\.layer_<n-1>'),
    (lambda p: {}, r'layer_0\.\.layer_<n-1>'),
    (lambda p: _set(p, 'layer_1', 'b_hh', None), r'layer_1 must hold exactly'),
    (lambda p: _set(p, 'layer_1', 'extra', jnp.zeros(3)), r'layer_1 must hold exactly'),
    (lambda p: _set(p, 'layer_1', 'w_ih', jnp.zeros((2, 5, 16))), r'layer_1/w_ih has shape'),
    (lambda p: _set(p, 'layer_0', 'b_ih', jnp.zeros((2, 15))), r'layer_0/b_ih has shape'),
    (lambda p: _set(p, 'layer_0', 'w_hh', jnp.zeros((3, 4, 16))), r'3 directions'),
  ],
  ids=['no-layer0', 'gap', 'empty', 'missing', 'extra', 'in-shape', 'bias-shape', 'dirs'],
)
def test_lstm_to_torch_errors(make, match):
  with pytest.raises(ValueError, match=match):
    interop.lstm_to_torch(make(_jax_params()))


def test_dense_and_regressor_errors():
  sd = {'fc.weight': torch.zeros(1, 16), 'fc.bias': torch.zeros(1)}
  with pytest.raises(ValueError, match=r"Unexpected keys.*'fc\.scale'"):
    interop.dense_from_torch({**sd, 'fc.scale': torch.zeros(1)}, 'fc.')
  with pytest.raises(ValueError, match=r"Missing key 'fc\.weight'"):
    interop.dense_from_torch({'fc.bias': torch.zeros(1)}, 'fc.')
  with pytest.raises(ValueError, match=r"'fc\.bias' has shape \(2,\); expected \(1,\)"):
    interop.dense_from_torch({**sd, 'fc.bias': torch.zeros(2)}, 'fc.')
  with pytest.raises(ValueError, match=r'Dense bias has shape'):
    interop.dense_to_torch({'kernel': np.zeros((16, 1)), 'bias': np.zeros(2)})
  with pytest.raises(ValueError, match=r'Dense params must be'):
    interop.dense_to_torch({'kernel': np.zeros((16, 1)), 'scale': np.zeros(1)})

  full = dict(TutorialModel().state_dict())
  with pytest.raises(ValueError, match=r"Unexpected keys outside.*'norm\.weight'"):
    interop.regressor_from_torch({**full, 'norm.weight': torch.zeros(16)})
  with pytest.raises(ValueError, match=r"Missing key 'fc\.weight'"):
    interop.regressor_from_torch({k: v for k, v in full.items() if k != 'fc.weight'})
  with pytest.raises(ValueError, match=r'Missing keys.*lstm\.bias_hh_l0'):
    interop.regressor_from_torch({k: v for k, v in full.items() if k != 'lstm.bias_hh_l0'})
  with pytest.raises(ValueError, match=r'overlap'):
    interop.regressor_from_torch(full, lstm_prefix='', head_prefix='fc.')
  with pytest.raises(ValueError, match=r'must be \{lstm, head\}'):
    interop.regressor_to_torch({'lstm': {}, 'fc': {}})


@pytest.mark.subprocess
def test_package_imports_without_torch():
  """torch is optional: importing the library and converting from numpy must not need it."""
  code = """
import sys
sys.modules['torch'] = None  # any `import torch` now raises ImportError
import numpy as np
import bilstm_jax.interop, bilstm_jax.nn.lstm
sd = {f'{n}_l0': np.zeros(s, np.float32) for n, s in
      [('weight_ih', (8, 3)), ('weight_hh', (8, 2)), ('bias_ih', (8,)), ('bias_hh', (8,))]}
p = bilstm_jax.interop.lstm_from_torch(sd)
assert p['layer_0']['w_ih'].shape == (1, 3, 8), p
try:
  bilstm_jax.interop.lstm_to_torch(p)
except ImportError:
  print('ok')
"""
  root = str(pathlib.Path(__file__).resolve().parents[2])
  env = {**os.environ, 'PYTHONPATH': root, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run(
    [sys.executable, '-c', code], capture_output=True, text=True, timeout=120, check=False, env=env
  )
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'ok'
