"""The generic sequence models: an optional embedding, a `BiLSTM` body and a head.

Modules read attributes, never a ConfigDict; `from_config(EncoderConfig, **sizes)` builds
one from a run config's typed `model` block and the sizes a task fitted. Inputs are float
features `float[batch, time, features]`, or token ids `int[batch, time]` when `vocab_size`
is set (then an embedding comes first). Parameter names: 'embed' (ids only), 'lstm', the
head's.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.heads import dense, pooling
from bilstm_jax.models.config import ModelConfig, dtype_from_name
from bilstm_jax.nn.lstm import BiLSTM


@dataclasses.dataclass(frozen=True)
class EncoderConfig(ModelConfig):
  """The generic models' options, from a run config's `model` block (`from_config`).

  Attributes:
    hidden_size: LSTM units per direction.
    num_layers: stacked LSTM layers.
    dropout: between stacked layers, and on the features before a tagger's or a
      classifier's head.
    bidirectional: both directions (False: forward only).
    dtype: the matmuls' dtype by name, 'float32' or 'bfloat16' (parameters stay float32).
    impl: the `BiLSTM` recurrence; None: the library default.
    embed_size: the embedding size (token-id inputs only).
    embed_dropout: dropout on the embeddings (token-id inputs only).
  """

  hidden_size: int
  num_layers: int = 1
  dropout: float = 0.0
  bidirectional: bool = True
  dtype: str = 'float32'
  impl: str | None = None
  embed_size: int = 64
  embed_dropout: float = 0.0


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
      (impl None: the library default); dtype a JAX dtype, not a name.
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

  @classmethod
  def from_config(cls, config: EncoderConfig, **sizes) -> Self:
    """The model from its typed config and what the task fitted, in one step.

    Args:
      config: the options (`EncoderConfig.from_config(run_config.model)`).
      **sizes: the rest of the attributes: `vocab_size` (None or absent for float
        features) and the head's (`num_classes`, `output_size`, `pooling`).

    Example:
      >>> config = EncoderConfig(hidden_size=8)
      >>> BiLSTMTagger.from_config(config, num_classes=5, vocab_size=100).hidden_size
      8
    """
    return cls(
      hidden_size=config.hidden_size,
      num_layers=config.num_layers,
      dropout=config.dropout,
      bidirectional=config.bidirectional,
      dtype=dtype_from_name(config.dtype),
      impl=config.impl,
      embed_size=config.embed_size,
      embed_dropout=config.embed_dropout,
      **sizes,
    )

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

  The encoder's attributes are `EncoderConfig`'s fields (dtype as a JAX dtype) and
  `vocab_size`: the number of token ids for id inputs, None for float features.

  Attributes:
    output_size: outputs per time step.
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

  The encoder's attributes: as `BiLSTMRegressor`'s.

  Attributes:
    num_classes: number of labels.
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

  The encoder's attributes: as `BiLSTMRegressor`'s.

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
