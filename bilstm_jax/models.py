"""Task models: an optional embedding, a `BiLSTM` body and a head.

Modules read attributes, never a ConfigDict. Inputs are float features
`float[batch, time, features]`, or token ids `int[batch, time]` when `vocab_size` is set
(then an embedding comes first). Parameter names: 'embed' (ids only), 'lstm', the head's.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.heads import dense, pooling
from bilstm_jax.nn.lstm import BiLSTM


def _check_ids(inputs: jax.Array, vocab_size: int) -> None:
  """Token ids must be int[batch, time] and, outside jit, lie in [0, vocab_size) (an
  embedding lookup would silently clamp an id past the table)."""
  if inputs.ndim != 2 or not jnp.issubdtype(inputs.dtype, jnp.integer):
    raise ValueError(
      f'inputs must be token ids int[batch, time] (vocab_size={vocab_size}); got '
      f'{inputs.dtype}{list(inputs.shape)}.'
    )
  if not isinstance(inputs, jax.core.Tracer):
    ids = np.asarray(inputs)
    bad = (ids < 0) | (ids >= vocab_size)
    if bad.any():
      i = np.argwhere(bad)[0].tolist()
      raise ValueError(f'inputs: token id {ids[tuple(i)]} at {i} is outside [0, {vocab_size}).')


class _Encoder(nn.Module):
  """The shared body: [embedding ->] BiLSTM. Subclasses add a head.

  Attributes:
    hidden_size, num_layers, dropout, bidirectional, dtype, impl: passed to `BiLSTM`
      (impl None: the library default).
    vocab_size: number of token ids when the inputs are ids; None for float features.
    embed_size: embedding size (ids only).
    embed_dropout: dropout on the embeddings (ids only).
  """

  hidden_size: int
  num_layers: int = 1
  dropout: float = 0.0
  bidirectional: bool = True
  dtype: Any = jnp.float32
  impl: str | None = None
  vocab_size: int | None = None
  embed_size: int = 64
  embed_dropout: float = 0.0

  def encode(self, inputs: jax.Array, lengths: jax.Array | None, deterministic: bool):
    """float[batch, time, dirs * hidden_size]: zero at padded steps."""
    if self.vocab_size is not None:
      _check_ids(inputs, self.vocab_size)
      x = nn.Embed(self.vocab_size, self.embed_size, name='embed')(inputs)
      x = nn.Dropout(self.embed_dropout)(x, deterministic=deterministic)
    else:
      if inputs.ndim != 3:
        raise ValueError(
          f'inputs must be float[batch, time, features] (the model has no vocab_size); got '
          f'shape {inputs.shape}.'
        )
      x = inputs
    kwargs = {} if self.impl is None else {'impl': self.impl}
    features, _ = BiLSTM(
      self.hidden_size,
      num_layers=self.num_layers,
      dropout=self.dropout,
      bidirectional=self.bidirectional,
      dtype=self.dtype,
      name='lstm',
      **kwargs,
    )(x, lengths, deterministic=deterministic)
    return features.astype(jnp.float32)


class BiLSTMRegressor(_Encoder):
  """The tutorial's model: a (Bi)LSTM and a per-step linear head.

  Attributes:
    output_size: outputs per time step (other attributes: see `_Encoder`).
  """

  output_size: int = 1

  @nn.compact
  def __call__(
    self, inputs: jax.Array, lengths: jax.Array | None = None, deterministic: bool = True
  ) -> jax.Array:
    """inputs -> predictions float32[batch, time, output_size].

    Predictions at padded steps are the head's bias; losses mask them out.
    """
    features = self.encode(inputs, lengths, deterministic)
    return dense.linear(self.output_size, features.shape[-1], 'head')(features)


class BiLSTMTagger(_Encoder):
  """Per-step class logits: a label for every step (POS tags, framewise labels).

  Attributes:
    num_classes: number of labels (other attributes: see `_Encoder`).
  """

  num_classes: int = 2

  @nn.compact
  def __call__(
    self, inputs: jax.Array, lengths: jax.Array | None = None, deterministic: bool = True
  ) -> jax.Array:
    """inputs -> logits float32[batch, time, num_classes]."""
    features = self.encode(inputs, lengths, deterministic)
    features = nn.Dropout(self.dropout)(features, deterministic=deterministic)
    return dense.linear(self.num_classes, features.shape[-1], 'head')(features)


class BiLSTMClassifier(_Encoder):
  """One label per sequence: features pooled over valid steps only, then a linear head.

  Attributes:
    num_classes: number of labels.
    pooling: 'mean', 'max' or 'attention' (see `bilstm_jax.heads.pooling`).
  """

  num_classes: int = 2
  pooling: str = 'mean'

  @nn.compact
  def __call__(
    self, inputs: jax.Array, lengths: jax.Array | None = None, deterministic: bool = True
  ) -> jax.Array:
    """inputs -> logits float32[batch, num_classes]."""
    features = self.encode(inputs, lengths, deterministic)
    if lengths is None:
      lengths = jnp.full((features.shape[0],), features.shape[1], jnp.int32)
    pooled = pooling.pool(features, lengths, self.pooling)
    pooled = nn.Dropout(self.dropout)(pooled, deterministic=deterministic)
    return dense.linear(self.num_classes, pooled.shape[-1], 'head')(pooled)
