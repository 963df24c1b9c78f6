"""Lossless conversion between PyTorch `state_dict`s and bilstm_jax parameters.

`torch.nn.LSTM` stores, for layer k and direction suffix s ('' forward, '_reverse'
backward):

  weight_ih_l{k}{s}: [4 * hidden, in_features]
  weight_hh_l{k}{s}: [4 * hidden, hidden]
  bias_ih_l{k}{s}:   [4 * hidden]
  bias_hh_l{k}{s}:   [4 * hidden]

`BiLSTM` keeps the same numbers with the weights transposed and the directions stacked on
a leading axis (see `bilstm_jax.nn.lstm`). Gate order (i, f, g, o) is the same in both, so
conversion is a transpose and a stack: no arithmetic, hence bit-exact both ways for
float32 parameters (float16/bfloat16 tensors widen to float32 exactly; float64 is rounded).

torch is optional: the `*_from_torch` functions accept torch tensors or numpy arrays and
never import torch; the `*_to_torch` functions import it when called.

Example:
  >>> torch_lstm = torch.nn.LSTM(5, 8, num_layers=2, batch_first=True, bidirectional=True)
  >>> params = lstm_from_torch(torch_lstm.state_dict())
  >>> x = jnp.ones((4, 10, 5))
  >>> y, (h_n, c_n) = BiLSTM(hidden_size=8, num_layers=2).apply({'params': params}, x)
  >>> torch_lstm.load_state_dict(lstm_to_torch(params))  # and back, bit for bit
"""

from __future__ import annotations

import collections
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
  import torch

_LSTM_KEY = re.compile(r'(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(\d+)(_reverse)?')
_SUFFIXES = ('', '_reverse')
_PARAM_NAMES = ('w_ih', 'w_hh', 'b_ih', 'b_hh')
_TORCH_NAMES = ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh')


def _to_numpy(value: Any, key: str) -> np.ndarray:
  """A float32 numpy copy of a torch tensor, numpy array or jax array."""
  if hasattr(value, 'detach'):  # a torch tensor; checked by duck type to avoid importing torch
    value = value.detach().cpu()
    if not value.is_floating_point():
      raise TypeError(f'{key!r} must be a floating point tensor; got dtype {value.dtype}.')
    # .float() first: numpy has no bfloat16. float16/bfloat16 widen exactly.
    return np.array(value.float().numpy(), dtype=np.float32)
  array = np.asarray(value)
  if not np.issubdtype(array.dtype, np.floating) and array.dtype.name != 'bfloat16':
    raise TypeError(f'{key!r} must be a floating point array; got dtype {array.dtype}.')
  return np.array(array, dtype=np.float32)


def _subdict(state_dict: Mapping[str, Any], prefix: str) -> dict[str, Any]:
  """The entries of `state_dict` under `prefix`, with the prefix removed."""
  if not isinstance(state_dict, Mapping):
    raise TypeError(f'Expected a state_dict mapping; got {type(state_dict).__name__}.')
  return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _parse_lstm_keys(sd: Mapping[str, Any], prefix: str) -> tuple[int, int]:
  """Validates the key set of an LSTM state_dict; returns (num_layers, num_directions)."""
  if not sd:
    raise ValueError(f'No LSTM parameters found under prefix {prefix!r}.')
  unexpected, found = [], []
  for key in sd:
    match = _LSTM_KEY.fullmatch(key)
    if match is None:
      unexpected.append(prefix + key)
    else:
      found.append((match.group(1), int(match.group(2)), match.group(3) or ''))
  if unexpected:
    raise ValueError(
      f'Unexpected keys in LSTM state_dict (prefix {prefix!r}): {sorted(unexpected)}. '
      'Expected weight_ih_l<k>, weight_hh_l<k>, bias_ih_l<k>, bias_hh_l<k> (+ _reverse).'
    )
  if any(name == 'weight_hr' for name, _, _ in found):
    raise ValueError(
      'LSTMs with proj_size > 0 (weight_hr_l<k> keys) are not supported: BiLSTM has no '
      'output projection.'
    )
  if not any(name.startswith('bias') for name, _, _ in found):
    raise ValueError(
      'LSTMs created with bias=False (no bias_ih/bias_hh keys) are not supported; add zero '
      'biases to the state_dict if that is what you mean.'
    )
  num_layers = max(layer for _, layer, _ in found) + 1
  num_dirs = 2 if any(suffix for _, _, suffix in found) else 1
  expected = {
    f'{name}_l{layer}{suffix}'
    for layer in range(num_layers)
    for suffix in _SUFFIXES[:num_dirs]
    for name in _TORCH_NAMES
  }
  odd = sorted(prefix + key for key in set(sd) - expected)  # e.g. 'weight_ih_l01'
  if odd:
    raise ValueError(f'Unexpected keys in LSTM state_dict (prefix {prefix!r}): {odd}.')
  missing = sorted(prefix + key for key in expected - set(sd))
  if missing:
    raise ValueError(
      f'Missing keys in LSTM state_dict for {num_layers} layer(s), {num_dirs} '
      f'direction(s): {missing}.'
    )
  return num_layers, num_dirs


def _check_shape(array: np.ndarray, want: tuple[int, ...], key: str) -> None:
  if array.shape != want:
    raise ValueError(f'{key!r} has shape {array.shape}; expected {want}.')


def lstm_config_from_torch(state_dict: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """Reads the architecture of a `torch.nn.LSTM` from its state_dict.

  Args:
    state_dict: a `torch.nn.LSTM` state_dict (or a model's, with `prefix`).
    prefix: key prefix of the LSTM, e.g. 'lstm.'; keys outside it are ignored.

  Returns:
    {'input_size', 'hidden_size', 'num_layers', 'bidirectional'}; the last three are the
    matching `BiLSTM` attributes.
  """
  sd = _subdict(state_dict, prefix)
  num_layers, num_dirs = _parse_lstm_keys(sd, prefix)
  w_hh = sd['weight_hh_l0']
  w_ih = sd['weight_ih_l0']
  if len(w_hh.shape) != 2 or len(w_ih.shape) != 2:
    raise ValueError(
      f'{prefix}weight_ih_l0 and weight_hh_l0 must be matrices; got shapes '
      f'{tuple(w_ih.shape)} and {tuple(w_hh.shape)}.'
    )
  return {
    'input_size': int(w_ih.shape[1]),
    'hidden_size': int(w_hh.shape[1]),
    'num_layers': num_layers,
    'bidirectional': num_dirs == 2,
  }


def lstm_from_torch(state_dict: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """Converts a `torch.nn.LSTM` state_dict into `BiLSTM` params.

  The number of layers and directions are read from the keys; `bias=False` and
  `proj_size > 0` LSTMs are rejected, as is anything that is not exactly one LSTM's
  parameters under `prefix`.

  Args:
    state_dict: maps 'weight_ih_l{k}[_reverse]' etc. to torch tensors or numpy arrays
      (float16, bfloat16 and float32 convert exactly; float64 is rounded to float32).
    prefix: key prefix of the LSTM inside a larger model's state_dict, e.g. 'lstm.'.
      Keys that do not start with it are ignored.

  Returns:
    {'layer_k': {'w_ih': float32[D, in, 4H], 'w_hh': float32[D, H, 4H],
    'b_ih': float32[D, 4H], 'b_hh': float32[D, 4H]}} as numpy arrays, for
    `BiLSTM(hidden_size=H, num_layers=len(result), bidirectional=D == 2)`; pass it as
    `module.apply({'params': result}, ...)`.

  Raises:
    ValueError: missing, unexpected or inconsistently shaped entries, or an unsupported
      LSTM variant.
    TypeError: non-floating point entries.
  """
  config = lstm_config_from_torch(state_dict, prefix)
  sd = _subdict(state_dict, prefix)
  num_layers = config['num_layers']
  d = 2 if config['bidirectional'] else 1
  h = config['hidden_size']
  if h == 0 or sd['weight_hh_l0'].shape[0] != 4 * h:
    raise ValueError(
      f'{prefix}weight_hh_l0 has shape {tuple(sd["weight_hh_l0"].shape)}; an LSTM needs '
      '[4 * hidden, hidden] (is this a GRU or plain RNN state_dict?).'
    )
  params = {}
  in_features = config['input_size']
  for layer in range(num_layers):
    wants = {
      'weight_ih': (4 * h, in_features),
      'weight_hh': (4 * h, h),
      'bias_ih': (4 * h,),
      'bias_hh': (4 * h,),
    }
    layer_params = {}
    for name, torch_name in zip(_PARAM_NAMES, _TORCH_NAMES, strict=True):
      per_dir = []
      for suffix in _SUFFIXES[:d]:
        key = f'{torch_name}_l{layer}{suffix}'
        array = _to_numpy(sd[key], prefix + key)
        _check_shape(array, wants[torch_name], prefix + key)
        per_dir.append(array.T if array.ndim == 2 else array)
      layer_params[name] = np.ascontiguousarray(np.stack(per_dir, axis=0))
    params[f'layer_{layer}'] = layer_params
    in_features = d * h
  return params


def _unwrap(params: Mapping[str, Any]) -> Mapping[str, Any]:
  """Accepts `{'params': {...}}` (a full variables dict) as well as the params alone."""
  if isinstance(params, Mapping) and set(params) == {'params'}:
    return params['params']
  return params


def _to_torch_tensor(array: Any) -> torch.Tensor:
  import torch  # optional dependency, imported only when converting to torch

  np_array = np.asarray(array)
  if np_array.dtype.name == 'bfloat16':  # numpy cannot hand bfloat16 to torch directly
    return torch.from_numpy(np_array.astype(np.float32)).to(torch.bfloat16)
  return torch.from_numpy(np.array(np_array, copy=True))


def lstm_to_torch(
  params: Mapping[str, Any], prefix: str = ''
) -> collections.OrderedDict[str, torch.Tensor]:
  """Converts `BiLSTM` params into a state_dict that `torch.nn.LSTM` loads.

  Args:
    params: {'layer_k': {'w_ih': [D, in, 4H], 'w_hh': [D, H, 4H], 'b_ih': [D, 4H],
      'b_hh': [D, 4H]}} for k = 0..num_layers-1 (or `{'params': that}`).
    prefix: prepended to every key, e.g. 'lstm.' for a submodule named lstm.

  Returns:
    OrderedDict of torch tensors in `torch.nn.LSTM`'s own key order, with the dtype of
    the params: `weight_ih_l{k}[_reverse]` [4H, in], `weight_hh_l{k}[_reverse]` [4H, H],
    `bias_ih_l{k}[_reverse]` [4H], `bias_hh_l{k}[_reverse]` [4H]. Load it with
    `torch.nn.LSTM(in, H, num_layers, batch_first=True, bidirectional=D == 2)`.

  Raises:
    ValueError: params that are not a well-formed `BiLSTM` parameter tree.
  """
  params = _unwrap(params)
  names = sorted(params, key=str)
  num_layers = len(names)
  if num_layers == 0 or names != sorted(f'layer_{k}' for k in range(num_layers)):
    raise ValueError(f'BiLSTM params must have keys layer_0..layer_<n-1>; got {names}.')
  first = params['layer_0']
  if set(first) != set(_PARAM_NAMES) or np.ndim(first['w_hh']) != 3:
    raise ValueError(f'layer_0 must hold {list(_PARAM_NAMES)} with w_hh [D, H, 4H].')
  d, h = np.shape(first['w_hh'])[:2]
  if d not in (1, 2):
    raise ValueError(f'BiLSTM params have {d} directions (leading axis); expected 1 or 2.')
  in_features = np.shape(first['w_ih'])[1] if np.ndim(first['w_ih']) == 3 else -1
  state_dict = collections.OrderedDict()
  for layer in range(num_layers):
    name = f'layer_{layer}'
    p = params[name]
    if set(p) != set(_PARAM_NAMES):
      raise ValueError(f'{name} must hold exactly {list(_PARAM_NAMES)}; got {sorted(p)}.')
    wants = {
      'w_ih': (d, in_features, 4 * h),
      'w_hh': (d, h, 4 * h),
      'b_ih': (d, 4 * h),
      'b_hh': (d, 4 * h),
    }
    for key, want in wants.items():
      if tuple(np.shape(p[key])) != want:
        raise ValueError(f'{name}/{key} has shape {tuple(np.shape(p[key]))}; expected {want}.')
    for k, suffix in enumerate(_SUFFIXES[:d]):
      for name_jax, name_torch in zip(_PARAM_NAMES, _TORCH_NAMES, strict=True):
        array = np.asarray(p[name_jax][k])
        state_dict[f'{prefix}{name_torch}_l{layer}{suffix}'] = _to_torch_tensor(
          array.T if array.ndim == 2 else array
        )
    in_features = d * h
  return state_dict


def dense_from_torch(state_dict: Mapping[str, Any], prefix: str = '') -> dict[str, np.ndarray]:
  """Converts a `torch.nn.Linear` state_dict into `flax.linen.Dense` params.

  Args:
    state_dict: holds '{prefix}weight' [out, in] and optionally '{prefix}bias' [out].
    prefix: key prefix of the layer, e.g. 'fc.'; keys outside it are ignored.

  Returns:
    {'kernel': float32[in, out], 'bias': float32[out]} (no 'bias' for a bias-free layer,
    matching `nn.Dense(use_bias=False)`).

  Raises:
    ValueError: missing, unexpected or inconsistently shaped entries.
  """
  sd = _subdict(state_dict, prefix)
  unexpected = sorted(prefix + k for k in set(sd) - {'weight', 'bias'})
  if unexpected:
    raise ValueError(f'Unexpected keys for a Linear layer: {unexpected}.')
  if 'weight' not in sd:
    raise ValueError(f'Missing key {prefix + "weight"!r} for a Linear layer.')
  weight = _to_numpy(sd['weight'], prefix + 'weight')
  if weight.ndim != 2:
    raise ValueError(f'{prefix + "weight"!r} has shape {weight.shape}; expected [out, in].')
  params = {'kernel': np.ascontiguousarray(weight.T)}
  if 'bias' in sd:
    bias = _to_numpy(sd['bias'], prefix + 'bias')
    _check_shape(bias, (weight.shape[0],), prefix + 'bias')
    params['bias'] = bias
  return params


def dense_to_torch(
  params: Mapping[str, Any], prefix: str = ''
) -> collections.OrderedDict[str, torch.Tensor]:
  """Converts `flax.linen.Dense` params into a `torch.nn.Linear` state_dict.

  Args:
    params: {'kernel': [in, out], 'bias': [out]} ('bias' optional).
    prefix: prepended to the keys, e.g. 'fc.'.

  Returns:
    OrderedDict {'{prefix}weight': [out, in], '{prefix}bias': [out]} of torch tensors.

  Raises:
    ValueError: keys other than kernel/bias, or inconsistent shapes.
  """
  params = _unwrap(params)
  if 'kernel' not in params or not set(params) <= {'kernel', 'bias'}:
    raise ValueError(f'Dense params must be {{kernel, bias}}; got {sorted(params)}.')
  kernel = np.asarray(params['kernel'])
  if kernel.ndim != 2:
    raise ValueError(f'Dense kernel has shape {kernel.shape}; expected [in, out].')
  state_dict = collections.OrderedDict({prefix + 'weight': _to_torch_tensor(kernel.T)})
  if 'bias' in params:
    bias = np.asarray(params['bias'])
    if bias.shape != (kernel.shape[1],):
      raise ValueError(f'Dense bias has shape {bias.shape}; expected ({kernel.shape[1]},).')
    state_dict[prefix + 'bias'] = _to_torch_tensor(bias)
  return state_dict


def regressor_from_torch(
  state_dict: Mapping[str, Any], lstm_prefix: str = 'lstm.', head_prefix: str = 'fc.'
) -> dict[str, Any]:
  """Converts a torch LSTM + Linear model into `BiLSTMRegressor` params.

  The torch model is the tutorial's
  `self.lstm = nn.LSTM(in, H, batch_first=True, bidirectional=True); self.fc = nn.Linear(...)`.

  Args:
    state_dict: the whole model's state_dict.
    lstm_prefix: key prefix of the LSTM submodule.
    head_prefix: key prefix of the Linear head.

  Returns:
    {'lstm': <lstm_from_torch params>, 'head': <dense_from_torch params>}; apply with
    `BiLSTMRegressor(...).apply({'params': result}, ...)`.

  Raises:
    ValueError: keys outside both prefixes, or any error of the two converters.
  """
  if lstm_prefix.startswith(head_prefix) or head_prefix.startswith(lstm_prefix):
    raise ValueError(f'Prefixes {lstm_prefix!r} and {head_prefix!r} overlap.')
  unexpected = sorted(
    k for k in state_dict if not (k.startswith(lstm_prefix) or k.startswith(head_prefix))
  )
  if unexpected:
    raise ValueError(f'Unexpected keys outside {lstm_prefix!r} and {head_prefix!r}: {unexpected}.')
  return {
    'lstm': lstm_from_torch(state_dict, lstm_prefix),
    'head': dense_from_torch(state_dict, head_prefix),
  }


def regressor_to_torch(
  params: Mapping[str, Any], lstm_prefix: str = 'lstm.', head_prefix: str = 'fc.'
) -> collections.OrderedDict[str, torch.Tensor]:
  """Converts `BiLSTMRegressor` params into the torch model's state_dict.

  Args:
    params: {'lstm': BiLSTM params, 'head': Dense params} (or `{'params': that}`).
    lstm_prefix: key prefix of the torch LSTM submodule.
    head_prefix: key prefix of the torch Linear head.

  Returns:
    OrderedDict of torch tensors: the LSTM's entries, then the head's.

  Raises:
    ValueError: params other than exactly 'lstm' and 'head', or malformed subtrees.
  """
  params = _unwrap(params)
  if set(params) != {'lstm', 'head'}:
    raise ValueError(f'BiLSTMRegressor params must be {{lstm, head}}; got {sorted(params)}.')
  state_dict = lstm_to_torch(params['lstm'], lstm_prefix)
  state_dict.update(dense_to_torch(params['head'], head_prefix))
  return state_dict
