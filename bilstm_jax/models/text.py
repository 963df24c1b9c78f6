"""Models for text: word embeddings (+ character features), stacked `BiLSTM` layers, a head.

Inputs are word ids `int32[batch, time]` (0 = padding, 1 = unknown), lengths `int32[batch]`,
optionally character ids `int32[batch, time, chars]` (0 = padding) and pretrained word
vectors `float[batch, time, d]` (zero for a word without one). Modules read
attributes, never a ConfigDict; `TextEncoder.from_config` builds the encoder from a run
config's typed `model` block (`TextEncoderConfig`) and the task's fitted vocabularies.

  TextEncoderConfig  the encoder's options from the `model` block
  TextEncoder        embeddings (+ CharCNN or CharLSTM) -> dropout -> BiLSTM layers with
                     dropout and an optional layer or batch norm between them
                     -> float[b, t, 2h]
  TextTagger         an encoder, then per-token logits or a CRF's emissions and scores
  TextClassifier     an encoder, pooled over valid words (mean, max or attention) -> logits
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

import flax.linen as nn
import jax
import jax.numpy as jnp

from bilstm_jax.heads import crf as crf_lib
from bilstm_jax.heads import pooling
from bilstm_jax.models.config import ModelConfig, dtype_from_name
from bilstm_jax.nn.lstm import BiLSTM
from bilstm_jax.nn.norm import MaskedBatchNorm

UNK_ID = 1  # `bilstm_jax.data.vocab.Vocabulary` puts '<unk>' right after '<pad>'


@dataclasses.dataclass(frozen=True)
class TextEncoderConfig(ModelConfig):
  """The text encoder's options, from a run config's `model` block (`from_config`).

  The fields are `TextEncoder`'s attributes of the same names (see there), dtype by name
  ('float32' or 'bfloat16'); `vectors_trainable` reads `model.word_vectors_trainable`.
  What the task fits (the vocabulary sizes, the character encoder its data was read for,
  the word vectors' dimension) is not here: `TextEncoder.from_config` takes it.
  """

  hidden_size: int
  num_layers: int = 1
  dropout: float = 0.0
  embed_size: int = 100
  embed_dropout: float = 0.0
  word_dropout: float = 0.0
  adversarial: float = 0.0
  vectors_trainable: bool = dataclasses.field(
    default=False, metadata={'key': 'word_vectors_trainable'}
  )
  char_embed_size: int = 30
  char_features: int = 50
  norm: str = ''
  dtype: str = 'float32'
  impl: str | None = None


def _mask(lengths: jax.Array, time: int) -> jax.Array:
  return jnp.arange(time)[None, :] < lengths[:, None]


class CharCNN(nn.Module):
  """One vector per word: a convolution over its characters, max-pooled over real ones.

  The convolution of Ma and Hovy (2016); on a CPU it costs far less than a character LSTM
  over every word of the batch.

  Attributes:
    vocab_size: character ids (0 = padding).
    embed_size: character embedding size.
    features: output size (filters).
    kernel_size: characters per window.
  """

  vocab_size: int
  embed_size: int = 30
  features: int = 50
  kernel_size: int = 3

  @nn.compact
  def __call__(self, chars: jax.Array) -> jax.Array:
    """chars: int[batch, time, width] -> float32[batch, time, features] (0 for empty words)."""
    b, t, w = chars.shape
    real = (chars.reshape(b * t, w) > 0)[..., None]
    x = nn.Embed(self.vocab_size, self.embed_size, name='embed')(chars.reshape(b * t, w))
    # Padding characters are zero, as the convolution's own edge padding is: a word's vector
    # does not depend on how wide the batch's character axis is.
    x = jnp.where(real, x, 0.0)
    # The convolution as one matmul over stacked shifted copies: XLA's CPU convolution is
    # several times slower than its matmul at these sizes.
    half = self.kernel_size // 2
    padded = jnp.pad(x, ((0, 0), (half, self.kernel_size - 1 - half), (0, 0)))
    windows = jnp.concatenate([padded[:, i : i + w] for i in range(self.kernel_size)], -1)
    x = nn.Dense(self.features, name='conv')(windows)
    out = jnp.where(real, x, -jnp.inf).max(1)
    out = jnp.where(real.any(1), out, 0.0)
    return out.reshape(b, t, self.features)


class CharLSTM(nn.Module):
  """One vector per word: a `BiLSTM` over its characters, final forward and backward states.

  Lample et al. (2016)'s character model. Every word of the batch is one sequence of the
  layer, its length the word's characters (padding words have length 0).

  Attributes:
    vocab_size, embed_size: as in `CharCNN`.
    features: hidden units per direction (the output has 2 * features).
    impl: `BiLSTM` recurrence (None: the library default).
  """

  vocab_size: int
  embed_size: int = 30
  features: int = 25
  impl: str | None = None

  @nn.compact
  def __call__(self, chars: jax.Array) -> jax.Array:
    """chars: int[batch, time, width] -> float32[batch, time, 2 * features]."""
    b, t, w = chars.shape
    flat = chars.reshape(b * t, w)
    lengths = (flat > 0).sum(1).astype(jnp.int32)
    x = nn.Embed(self.vocab_size, self.embed_size, name='embed')(flat)
    kwargs = {} if self.impl is None else {'impl': self.impl}
    _, (h_n, _) = BiLSTM(self.features, name='lstm', **kwargs)(x, lengths)
    out = jnp.concatenate([h_n[-2], h_n[-1]], -1)
    return jnp.where(lengths[:, None] > 0, out, 0.0).reshape(b, t, 2 * self.features)


class TextEncoder(nn.Module):
  """Words (+ characters) -> contextual features, zero at padded steps.

  Attributes:
    vocab_size: word ids (0 = padding, 1 = unknown).
    hidden_size: LSTM units per direction.
    num_layers: stacked BiLSTM layers.
    embed_size: word embedding size.
    char_vocab_size: character ids; 0 = no character features.
    char_encoder: 'cnn' (`CharCNN`) or 'lstm' (`CharLSTM`).
    char_embed_size, char_features: their sizes.
    embed_dropout: dropout on the concatenated word and character vectors.
    word_dropout: training only: the probability of replacing a word id by the unknown id,
      so the unknown embedding learns from real contexts (Lample et al. 2016).
    dropout: between stacked layers and on the top layer's outputs.
    vectors_dim: > 0: the model also takes each word's pretrained vector, float[batch, time,
      vectors_dim] (zero for a word without one), and `embed_size` must equal it. A word
      with a vector is represented by it, a word without one by its trained embedding.
    vectors_trainable: fine-tune the vectors: a trained offset per training word (zero at
      the start) is added to its vector; words outside the training vocabulary (the unknown
      id) share the unknown word's offset. False: the vectors stay as they are.
    adversarial: > 0: the embeddings (word and character vectors, before dropout) are
      marked with `perturb('embeddings')`, where `training.steps.train_step` adds a
      perturbation of this L2 norm per sentence in the direction that most raises the
      loss, and trains on both losses (Miyato et al. 2017). No effect at evaluation.
    norm: '', 'layer' or 'batch': normalisation of each layer's outputs before the next
      layer: layer norm, or batch norm over valid steps (`bilstm_jax.nn.MaskedBatchNorm`,
      running statistics in the 'batch_stats' collection).
    dtype, impl: passed to `BiLSTM`.
  """

  vocab_size: int
  hidden_size: int
  num_layers: int = 1
  embed_size: int = 100
  char_vocab_size: int = 0
  char_encoder: str = 'cnn'
  char_embed_size: int = 30
  char_features: int = 50
  embed_dropout: float = 0.0
  word_dropout: float = 0.0
  dropout: float = 0.0
  vectors_dim: int = 0
  vectors_trainable: bool = False
  adversarial: float = 0.0
  norm: str = ''
  dtype: Any = jnp.float32
  impl: str | None = None

  @classmethod
  def from_config(
    cls,
    config: TextEncoderConfig,
    vocab_size: int,
    char_vocab_size: int = 0,
    char_encoder: str = 'cnn',
    vectors_dim: int = 0,
  ) -> Self:
    """The encoder from its typed options and the task's fitted vocabularies, in one step.

    Args:
      config: the options (`TextEncoderConfig.from_config(run_config.model)`).
      vocab_size: word ids (the fitted word vocabulary).
      char_vocab_size: character ids; 0 = no character features.
      char_encoder: 'cnn' or 'lstm'.
      vectors_dim: the pretrained vectors' dimension (0: none); with vectors the
        embedding takes their dimension, whatever `config.embed_size` says.
    """
    return cls(
      vocab_size=vocab_size,
      hidden_size=config.hidden_size,
      num_layers=config.num_layers,
      embed_size=vectors_dim or config.embed_size,
      char_vocab_size=char_vocab_size,
      char_encoder=char_encoder,
      char_embed_size=config.char_embed_size,
      char_features=config.char_features,
      embed_dropout=config.embed_dropout,
      word_dropout=config.word_dropout,
      dropout=config.dropout,
      vectors_dim=vectors_dim,
      vectors_trainable=config.vectors_trainable,
      adversarial=config.adversarial,
      norm=config.norm,
      dtype=dtype_from_name(config.dtype),
      impl=config.impl,
    )

  @nn.compact
  def __call__(
    self, words, lengths, chars=None, vectors=None, deterministic: bool = True
  ) -> jax.Array:
    """Features of every word.

    Args:
      words: int32[batch, time]; lengths: int32[batch].
      chars: int32[batch, time, width] when `char_vocab_size` > 0.
      vectors: float[batch, time, vectors_dim] when `vectors_dim` > 0 (float16 is fine).
      deterministic: False in training (dropout on; needs a 'dropout' rng).

    Returns:
      float32[batch, time, 2 * hidden_size], zero at t >= lengths.
    """
    mask = _mask(lengths, words.shape[1])
    dropped = jnp.zeros(words.shape, bool)
    if self.word_dropout > 0 and not deterministic:
      drop = jax.random.bernoulli(self.make_rng('dropout'), self.word_dropout, words.shape)
      dropped = drop & (words > 0)
      words = jnp.where(dropped, UNK_ID, words)
    x = nn.Embed(self.vocab_size, self.embed_size, name='embed')(words)
    if self.vectors_dim:
      x = self._with_vectors(x, words, vectors, dropped)
    if self.char_vocab_size:
      if chars is None:
        raise ValueError('This model reads character ids: pass chars int32[batch, time, w].')
      if self.char_encoder == 'cnn':
        char_model = CharCNN(self.char_vocab_size, self.char_embed_size, self.char_features)
      elif self.char_encoder == 'lstm':
        char_model = CharLSTM(
          self.char_vocab_size, self.char_embed_size, self.char_features, self.impl
        )
      else:
        raise ValueError(f"char_encoder must be 'cnn' or 'lstm'; got {self.char_encoder!r}.")
      x = jnp.concatenate([x, char_model(chars)], -1)
    if self.adversarial > 0:
      x = self.perturb('embeddings', x)
    x = nn.Dropout(self.embed_dropout)(x, deterministic=deterministic)
    kwargs = {} if self.impl is None else {'impl': self.impl}
    # One BiLSTM per layer (not `num_layers=`) so a norm can sit between layers.
    for layer in range(self.num_layers):
      x, _ = BiLSTM(self.hidden_size, dtype=self.dtype, name=f'lstm_{layer}', **kwargs)(x, lengths)
      x = x.astype(jnp.float32)
      if self.norm not in ('', 'layer', 'batch'):
        raise ValueError(f"norm must be '', 'layer' or 'batch'; got {self.norm!r}.")
      if self.norm == 'layer' and layer < self.num_layers - 1:
        x = jnp.where(mask[..., None], nn.LayerNorm(name=f'norm_{layer}')(x), 0.0)
      elif self.norm == 'batch' and layer < self.num_layers - 1:
        x = MaskedBatchNorm(name=f'norm_{layer}')(x, mask, use_running_average=deterministic)
      x = nn.Dropout(self.dropout)(x, deterministic=deterministic)
    return x

  def _with_vectors(self, x, words, vectors, dropped) -> jax.Array:
    """Each word's pretrained vector (plus its trained offset) where it has one, else its
    embedding `x`; a word dropped to the unknown id loses its vector too."""
    if vectors is None or vectors.shape[-1] != self.vectors_dim:
      got = None if vectors is None else vectors.shape
      raise ValueError(
        f'This model reads word vectors float[batch, time, {self.vectors_dim}]; got {got}.'
      )
    if self.embed_size != self.vectors_dim:
      raise ValueError(f'embed_size {self.embed_size} must equal vectors_dim {self.vectors_dim}.')
    v = vectors.astype(jnp.float32)
    has = jnp.any(v != 0, -1) & ~dropped
    if self.vectors_trainable:
      offset = nn.Embed(
        self.vocab_size, self.vectors_dim, embedding_init=nn.initializers.zeros, name='offset'
      )
      v = v + offset(words)
    return jnp.where(has[..., None], v, x)


class TextTagger(nn.Module):
  """Per-token scores over `num_tags` tags, optionally for a linear-chain CRF.

  Attributes:
    encoder: the `TextEncoder` (its parameters are the model's 'encoder').
    num_tags: tags.
    crf: add CRF transition scores (the outputs are then a dict).
    allowed: optional `crf_lib.AllowedTransitions` (BIO/BIOES constraints).

  Example:
    >>> encoder = TextEncoder.from_config(TextEncoderConfig(hidden_size=8), vocab_size=50)
    >>> model = TextTagger(encoder, num_tags=5, crf=True)
  """

  encoder: TextEncoder
  num_tags: int
  crf: bool = False
  allowed: Any = None

  @nn.compact
  def __call__(self, words, lengths, chars=None, vectors=None, deterministic: bool = True):
    """Returns logits float32[batch, time, num_tags]; with `crf`, a dict of 'emissions'
    (that shape), 'transitions' float32[num_tags, num_tags] (from, to), 'start' and 'end'
    float32[num_tags], forbidden moves already at `crf_lib.DISALLOWED`."""
    x = self.encoder(words, lengths, chars, vectors, deterministic)
    logits = nn.Dense(self.num_tags, name='head')(x)
    if not self.crf:
      return logits
    transitions, start, end = crf_lib.CRF(self.num_tags, self.allowed, name='crf').scores()
    return {'emissions': logits, 'transitions': transitions, 'start': start, 'end': end}


class TextClassifier(nn.Module):
  """One label per sentence: encoder features pooled over valid words, then a linear head.

  Attributes:
    encoder: the `TextEncoder` (its parameters are the model's 'encoder').
    num_classes: labels.
    pooling: 'mean', 'max' or 'attention' (`bilstm_jax.heads.pooling`).
  """

  encoder: TextEncoder
  num_classes: int
  pooling: str = 'max'

  @nn.compact
  def __call__(
    self, words, lengths, chars=None, vectors=None, deterministic: bool = True
  ) -> jax.Array:
    """-> logits float32[batch, num_classes]."""
    x = self.encoder(words, lengths, chars, vectors, deterministic)
    pooled = pooling.pool(x, lengths, self.pooling)
    return nn.Dense(self.num_classes, name='head')(pooled)
