"""`BiLSTM(impl='cudnn')`: one layer through cuDNN's LSTM on GPUs (`jax.experimental.rnn`).

The layer takes and returns what every layer of `bilstm_jax.nn.recurrence` does; in between,
its weights are packed into the flat vector cuDNN reads, and its batch runs batch-first
with per-sequence lengths. cuDNN's gradients come from cuDNN too (the custom_vjp of
`jax.experimental.rnn.lstm`).

Differences from the other layers, all handled here or refused:
  * `valid` must be a prefix mask (real steps first), as `BiLSTM` builds it from
    `lengths`; the lengths are its column sums.
  * cuDNN needs at least one step per sequence. A zero-length sequence runs one step,
    whose outputs are masked to zero and whose final states are replaced by h0 and c0.
  * float32 only (`jax.experimental.rnn` has no bfloat16 LSTM); float32 matmuls follow
    `jax_default_matmul_precision`, like XLA's own dots on the GPU.
  * Only a GPU backend lowers it. On others the layer raises a ValueError at trace time.
  * Not under `jax.vmap`: `jax.experimental.rnn`'s primitives have no batching rule, so
    vmapped ensembles need `impl='fused'` (what 'auto' picks on a GPU).

Not yet run on a GPU in this project's tests (CI has none). The tests check the weight
packing and the masking on CPU by running `jax.experimental.rnn`'s reference
implementation (`lstm_ref`) on the packed weights, as JAX's own tests check cuDNN
against it; `benchmarks/bench_bilstm.py` times the layer wherever a GPU is present.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# `jax.experimental.rnn` is imported where it is used: importing `bilstm_jax` must not
# depend on an experimental module that a JAX release could move.


def pack_weights(w_ih: jax.Array, bias: jax.Array, w_hh: jax.Array) -> jax.Array:
  """A layer's arrays as cuDNN's flat weight vector (one layer, `dirs` directions).

  cuDNN's order (`jax.experimental.rnn`'s docstring): per direction W_ih [4H, in] and
  W_hh [4H, H] (PyTorch's layout: ours transposed), then per direction b_ih and b_hh.
  Gate order is i, f, g, o in both libraries. The combined bias goes into b_ih; b_hh is
  zero.
  """
  dirs = w_ih.shape[0]
  mats = [m for d in range(dirs) for m in (w_ih[d].T.ravel(), w_hh[d].T.ravel())]
  biases = [b for d in range(dirs) for b in (bias[d], jnp.zeros_like(bias[d]))]
  return jnp.concatenate([*mats, *biases]).astype(jnp.float32)


def lstm_layer_cudnn(x, valid, w_ih, bias, w_hh, h0, c0, matmul_dtype=None, lstm=None):
  """One LSTM layer through cuDNN; arguments and results as `recurrence.lstm_layer_reference`.

  Args:
    x, valid, w_ih, bias, w_hh, h0, c0, matmul_dtype: as for the other layers.
    lstm: the function called with cuDNN's arguments; default `jax.experimental.rnn.lstm`
      (tests pass a CPU reference with the same signature).
  """
  if matmul_dtype is not None and jnp.dtype(matmul_dtype) != jnp.float32:
    raise ValueError(
      f"BiLSTM impl='cudnn' computes in float32 only; got dtype {jnp.dtype(matmul_dtype)}. "
      "Use impl='fused' for other matmul dtypes."
    )
  if lstm is None:
    if jax.default_backend() != 'gpu':
      raise ValueError(
        f"BiLSTM impl='cudnn' needs a GPU backend; JAX's default backend is "
        f"{jax.default_backend()!r}. Use impl='auto'."
      )
    from jax.experimental import rnn

    lstm = rnn.lstm
  dirs, features, gates = w_ih.shape
  hidden = gates // 4
  lengths = valid.sum(axis=0, dtype=jnp.int32)  # [batch]
  y, h_n, c_n = lstm(
    jnp.swapaxes(x, 0, 1).astype(jnp.float32),
    h0,
    c0,
    pack_weights(w_ih, bias, w_hh),
    jnp.maximum(lengths, 1),
    input_size=features,
    hidden_size=hidden,
    num_layers=1,
    dropout=0.0,
    bidirectional=dirs == 2,
  )
  hs = jnp.where(valid[..., None], jnp.swapaxes(y, 0, 1), 0.0)  # [time, batch, dirs * H]
  empty = (lengths == 0)[None, :, None]
  return hs, (jnp.where(empty, h0, h_n), jnp.where(empty, c0, c_n))


def reference_lstm(
  x,
  h_0,
  c_0,
  weights,
  seq_lengths,
  input_size,
  hidden_size,
  num_layers,
  dropout,
  bidirectional,
  precision=None,
):
  """`jax.experimental.rnn.lstm`'s signature, computed by its CPU reference `lstm_ref`."""
  from jax.experimental import rnn

  del precision  # the reference computes at the default precision
  dims = (input_size, hidden_size, num_layers)
  w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(weights, *dims, bidirectional)
  return rnn.lstm_ref(
    x, h_0, c_0, w_ih, w_hh, b_ih, b_hh, seq_lengths, *dims, dropout, bidirectional
  )
