"""Typed model configs: read from a run config's `model` block, and every model built from
one in a single step with the parameters it had when built from keyword arguments."""

import dataclasses

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from bilstm_jax.ensembles import hparams
from bilstm_jax.models import (
  BiLSTMTagger,
  EncoderConfig,
  ForecastConfig,
  TextEncoder,
  TextEncoderConfig,
  TextTagger,
  WindowForecaster,
)
from bilstm_jax.tasks import TaggingTask
from configs import default


def _shapes(variables) -> dict:
  return {
    jax.tree_util.keystr(p): x.shape for p, x in jax.tree_util.tree_leaves_with_path(variables)
  }


def test_the_default_model_block_becomes_a_typed_frozen_config():
  config = default.get_config()
  config.model.hidden_size, config.model.impl = 5, ''
  options = EncoderConfig.from_config(config.model)
  assert options == EncoderConfig(hidden_size=5, embed_size=64, impl=None)
  assert isinstance(options.hidden_size, int) and options.dtype == 'float32'
  with pytest.raises(dataclasses.FrozenInstanceError):
    options.hidden_size = 6  # type: ignore[misc]


def test_a_field_reads_the_key_its_metadata_names_and_absent_keys_keep_defaults():
  block = ml_collections.ConfigDict({'hidden_size': 3, 'word_vectors_trainable': True, 'crf': 1})
  options = TextEncoderConfig.from_config(block)
  assert options.vectors_trainable and options.hidden_size == 3
  assert options.embed_size == TextEncoderConfig.__dataclass_fields__['embed_size'].default


def test_from_config_builds_the_model_the_keyword_arguments_build():
  options = EncoderConfig(hidden_size=4, num_layers=2, dropout=0.1, dtype='bfloat16')
  model = BiLSTMTagger.from_config(options, num_classes=3, vocab_size=7)
  assert model == BiLSTMTagger(
    hidden_size=4, num_layers=2, dropout=0.1, dtype=jnp.bfloat16, num_classes=3, vocab_size=7
  )
  ids = jnp.ones((2, 5), jnp.int32)
  assert set(model.init(jax.random.key(0), ids)['params']) == {'embed', 'lstm', 'head'}


def test_the_text_encoder_takes_the_vectors_dimension_and_stays_named_encoder():
  options = TextEncoderConfig(hidden_size=3, embed_size=100)
  encoder = TextEncoder.from_config(options, vocab_size=9, vectors_dim=6)
  assert encoder.embed_size == 6 and encoder.vectors_dim == 6
  words, lengths = jnp.ones((2, 4), jnp.int32), jnp.array([4, 2], jnp.int32)
  vectors = jnp.ones((2, 4, 6))
  params = TextTagger(encoder, num_tags=4).init(jax.random.key(0), words, lengths, None, vectors)
  assert set(params['params']) == {'encoder', 'head'}
  assert params['params']['encoder']['embed']['embedding'].shape == (9, 6)


def test_the_forecaster_reads_linear_skip_and_leaves_linear_base_to_the_task():
  options = ForecastConfig(hidden_size=4, norm='last', linear_skip=True, linear_base=True)
  model = WindowForecaster.from_config(options, horizon=2, out_channels=1, target_index=(0,))
  assert model.linear_skip and model.linear_init is None
  assert (model.hidden_size, model.norm, model.horizon, model.target_index) == (4, 'last', 2, (0,))


def test_an_ensemble_replaces_the_dropout_of_the_typed_config():
  task = TaggingTask(model=EncoderConfig(hidden_size=4, dropout=0.0), sizes={'input_size': 3})
  task = dataclasses.replace(task, sizes={'input_size': 3, 'num_classes': 2})
  wider = hparams.with_dropout_layers(task, np.array([0.1, 0.3], np.float32))
  assert wider.model == dataclasses.replace(task.model, dropout=pytest.approx(0.3))
  assert wider.make_model().dropout == pytest.approx(0.3)
  x = jnp.ones((2, 5, 3))
  same = _shapes(wider.make_model().init(jax.random.key(0), x))
  assert same == _shapes(task.make_model().init(jax.random.key(0), x))
