"""`BiLSTM`: a stacked (bi)directional LSTM with the semantics of `torch.nn.LSTM`.

Parameters of layer k live under `params['layer_k']` as a dict of arrays, directions
stacked on the leading axis (0 = forward, 1 = backward):

  w_ih: [dirs, in_features, 4 * hidden]   PyTorch `weight_ih_lk`, transposed
  w_hh: [dirs, hidden, 4 * hidden]        PyTorch `weight_hh_lk`, transposed
  b_ih: [dirs, 4 * hidden]                PyTorch `bias_ih_lk`
  b_hh: [dirs, 4 * hidden]                PyTorch `bias_hh_lk`

Gate order is PyTorch's: input, forget, cell (g), output. `bilstm_jax.interop` converts
to and from a PyTorch `state_dict` losslessly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.nn import cudnn, fused, native, recurrence

Initializer = Callable[[jax.Array, tuple[int, ...], Any], jax.Array]

# Layer implementations by name (`BiLSTM.impl`), all with the signature and numbers of
# `recurrence.lstm_layer_reference`. The default 'auto' picks 'native' or 'fused'.
_LAYER_IMPLS: dict[str, Callable] = {}


def register_layer_impl(name: str, fn: Callable) -> None:
  """Registers a layer with the signature of `recurrence.lstm_layer_reference`.

  It is stored jitted (`matmul_dtype` static): inside a caller's jit that changes
  nothing, and eager calls of the module reuse one compiled layer per shape instead of
  compiling every primitive of the loop again on each call.
  """
  _LAYER_IMPLS[name] = jax.jit(fn, static_argnums=7)


register_layer_impl('reference', recurrence.lstm_layer_reference)
register_layer_impl('fused', fused.lstm_layer_fused)
register_layer_impl('native', fused.lstm_layer_native)
register_layer_impl('cudnn', cudnn.lstm_layer_cudnn)


def pytorch_uniform(hidden_size: int) -> Initializer:
  """U(-1/sqrt(hidden), 1/sqrt(hidden)), PyTorch's default for every LSTM weight."""
  bound = 1.0 / np.sqrt(hidden_size)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def _is_concrete(x) -> bool:
  return not isinstance(x, jax.core.Tracer)


def check_inputs(inputs, lengths, time_major: bool) -> None:
  """Raises ValueError/TypeError naming what is wrong with `inputs` or `lengths`.

  Shape and dtype checks always run (they are static); value checks (NaN, length range)
  run when the arrays are concrete, i.e. outside `jax.jit`. Training loops validate
  batches on the host before they reach the jitted step (`bilstm_jax.data.batching.check_batch`).
  """
  if inputs.ndim != 3:
    layout = '[time, batch, features]' if time_major else '[batch, time, features]'
    raise ValueError(f'BiLSTM inputs must have rank 3 {layout}; got shape {inputs.shape}.')
  if not jnp.issubdtype(inputs.dtype, jnp.floating):
    raise TypeError(f'BiLSTM inputs must be floating point; got dtype {inputs.dtype}.')
  time, batch = inputs.shape[:2] if time_major else inputs.shape[1::-1]
  # numpy, not jnp: inside jit, jnp ops on a closed-over constant give tracers.
  if _is_concrete(inputs) and not np.isfinite(np.asarray(inputs)).all():
    bad = np.argwhere(~np.isfinite(np.asarray(inputs)))[0].tolist()
    raise ValueError(f'BiLSTM inputs contain NaN or inf (first at index {bad}).')
  if lengths is None:
    return
  if not jnp.issubdtype(lengths.dtype, jnp.integer):
    raise TypeError(f'lengths must be an integer array; got dtype {lengths.dtype}.')
  if lengths.shape != (batch,):
    raise ValueError(f'lengths must have shape [batch]=({batch},); got {lengths.shape}.')
  if _is_concrete(lengths):
    lengths = np.asarray(lengths)
    if lengths.size and lengths.min() < 0:
      raise ValueError(f'lengths must be >= 0; got {lengths.min()} at {int(lengths.argmin())}.')
    if lengths.size and lengths.max() > time:
      raise ValueError(
        f'lengths must be <= the time axis ({time}); got {lengths.max()} at batch index '
        f'{int(lengths.argmax())}.'
      )


class BiLSTM(nn.Module):
  """A stacked LSTM, bidirectional by default, like `torch.nn.LSTM(batch_first=True)`.

  Attributes:
    hidden_size: units per direction.
    num_layers: stacked layers; layer k > 0 reads layer k-1's concatenated outputs.
    dropout: dropout rate on the outputs of every layer but the last (as in PyTorch).
    bidirectional: False gives a plain forward LSTM.
    time_major: if True, inputs are [time, batch, features] and outputs [time, batch, ...].
    dtype: dtype of the matmul operands (e.g. jnp.bfloat16); gate arithmetic, states and
      accumulation stay float32. Outputs are returned in this dtype.
    param_dtype: dtype of the parameters.
    kernel_init, recurrent_init, bias_init: initialisers for w_ih, w_hh and both biases;
      None means PyTorch's U(-1/sqrt(H), 1/sqrt(H)).
    impl: which recurrence to run, all with the same numbers: 'fused' (a hand-written
      backward pass around two `lax.scan`s, see `bilstm_jax.nn.fused`), 'native' (the same,
      with both loops in a multi-threaded CPU kernel, `bilstm_jax.nn.native`; CPU only,
      float32 or bfloat16), 'cudnn' (cuDNN's LSTM through `jax.experimental.rnn`, GPU
      and float32 only, see `bilstm_jax.nn.cudnn`), 'reference' (autodiff through
      `lax.scan`), or 'auto' (default): 'native' when JAX computes on a single CPU device
      in float32 or bfloat16 and the kernel builds, else 'fused'.

  Example:
    >>> lstm = BiLSTM(hidden_size=8, num_layers=2)
    >>> x = jnp.ones((4, 10, 5))
    >>> params = lstm.init(jax.random.key(0), x)
    >>> y, (h_n, c_n) = lstm.apply(params, x, lengths=jnp.array([10, 7, 3, 0]))
    >>> y.shape, h_n.shape
    ((4, 10, 16), (4, 4, 8))
  """

  hidden_size: int
  num_layers: int = 1
  dropout: float = 0.0
  bidirectional: bool = True
  time_major: bool = False
  dtype: Any = jnp.float32
  param_dtype: Any = jnp.float32
  kernel_init: Initializer | None = None
  recurrent_init: Initializer | None = None
  bias_init: Initializer | None = None
  impl: str = 'auto'

  @property
  def num_directions(self) -> int:
    return 2 if self.bidirectional else 1

  def _layer_params(self, layer: int, in_features: int) -> dict[str, jax.Array]:
    name = f'layer_{layer}'
    d, h = self.num_directions, self.hidden_size
    if self.has_variable('params', name):
      have = self.get_variable('params', name)['w_ih'].shape[1]
      if have != in_features:
        what = 'inputs have' if layer == 0 else f'layer {layer - 1} gives'
        raise ValueError(
          f'BiLSTM {what} {in_features} features, but the parameters of {name} were '
          f'initialised for {have}.'
        )
    default = pytorch_uniform(h)
    k_init = self.kernel_init or default
    r_init = self.recurrent_init or default
    b_init = self.bias_init or default

    shapes = {
      'w_ih': (d, in_features, 4 * h),
      'w_hh': (d, h, 4 * h),
      'b_ih': (d, 4 * h),
      'b_hh': (d, 4 * h),
    }

    def init(key):
      if k_init is r_init is b_init is default:
        # All four from one draw: each random-number call is a program fragment that XLA
        # compiles on its own (benchmarks/NOTES.md has the cost), and the values are the
        # same distribution.
        sizes = [int(np.prod(s)) for s in shapes.values()]
        flat = default(key, (sum(sizes),), self.param_dtype)
        parts = jnp.split(flat, np.cumsum(sizes)[:-1])
        return {n: a.reshape(s) for (n, s), a in zip(shapes.items(), parts, strict=True)}
      inits = (k_init, r_init, b_init, b_init)
      keys = jax.random.split(key, 4)
      return {
        n: f(k, s, self.param_dtype)
        for (n, s), f, k in zip(shapes.items(), inits, keys, strict=True)
      }

    return self.param(name, init)

  @nn.compact
  def __call__(
    self,
    inputs: jax.Array,
    lengths: jax.Array | None = None,
    initial_state: tuple[jax.Array, jax.Array] | None = None,
    deterministic: bool = True,
  ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    """Runs the stacked LSTM.

    Args:
      inputs: float[batch, time, features] ([time, batch, features] if time_major).
      lengths: optional int[batch], each sequence's number of real steps (0..time).
        Outputs at steps >= length are exactly zero; final states are taken at
        length - 1; the backward direction starts at length - 1.
      initial_state: optional (h_0, c_0), each float[num_layers * dirs, batch, hidden].
        Zeros if omitted.
      deterministic: if False, applies inter-layer dropout (needs a 'dropout' rng).

    Returns:
      outputs: [batch, time, dirs * hidden] ([time, batch, ...] if time_major).
      (h_n, c_n): each float32[num_layers * dirs, batch, hidden], ordered as PyTorch
        orders them (layer 0 forward, layer 0 backward, layer 1 forward, ...).
    """
    check_inputs(inputs, lengths, self.time_major)
    matmul_dtype = None if self.dtype == jnp.float32 else self.dtype
    impl = self.impl
    if impl == 'auto':
      impl = 'native' if fused.native_supports(matmul_dtype) and native.preferred() else 'fused'
    elif impl == 'native' and native.is_disabled():  # e.g. jax.export: no custom call
      impl = 'fused'
    if impl not in _LAYER_IMPLS:
      known = sorted([*_LAYER_IMPLS, 'auto'])
      raise ValueError(f'Unknown BiLSTM impl {self.impl!r}; known: {known}.')
    run_layer = _LAYER_IMPLS[impl]
    x = inputs if self.time_major else jnp.swapaxes(inputs, 0, 1)  # [T, B, F]
    time, batch = x.shape[:2]
    d, h = self.num_directions, self.hidden_size

    if lengths is None:
      valid = jnp.ones((time, batch), bool)
    else:
      valid = jnp.arange(time)[:, None] < lengths[None, :]

    if initial_state is None:
      h0 = c0 = jnp.zeros((self.num_layers * d, batch, h), jnp.float32)
    else:
      h0, c0 = (jnp.asarray(s, jnp.float32) for s in initial_state)
      want = (self.num_layers * d, batch, h)
      if h0.shape != want or c0.shape != want:
        raise ValueError(
          f'initial_state must be two arrays of shape {want}; got {h0.shape} and {c0.shape}.'
        )

    h_n, c_n = [], []
    for layer in range(self.num_layers):
      p = self._layer_params(layer, x.shape[-1])
      sl = slice(layer * d, (layer + 1) * d)
      bias = p['b_ih'] + p['b_hh']
      if time == 0:  # no steps: the states pass through (the scans cannot run zero steps)
        hs, (hn, cn) = jnp.zeros((0, batch, d * h), jnp.float32), (h0[sl], c0[sl])
      else:
        hs, (hn, cn) = run_layer(x, valid, p['w_ih'], bias, p['w_hh'], h0[sl], c0[sl], matmul_dtype)
      x = hs.astype(self.dtype)  # [T, B, D * H]: forward units, then backward
      h_n.append(hn)
      c_n.append(cn)
      if self.dropout > 0 and layer < self.num_layers - 1:
        x = nn.Dropout(self.dropout)(x, deterministic=deterministic)

    outputs = x if self.time_major else jnp.swapaxes(x, 0, 1)
    return outputs, (jnp.concatenate(h_n, 0), jnp.concatenate(c_n, 0))
