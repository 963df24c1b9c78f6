"""Every model, by family: each a Flax module built from its typed config in one step.

A run config's `model` block becomes a frozen dataclass of the family's options
(`EncoderConfig.from_config(config.model)`), which a task keeps as its `model`; the model
is then `Family.from_config(options, **sizes)`, the sizes being what the task fitted to its
training data. Modules read attributes, never a ConfigDict.

config.py    `ModelConfig`: what the typed configs share (reading a `model` block)
sequence.py  the generic models on float features or token ids: [embedding ->] BiLSTM
             -> a head: `BiLSTMRegressor`, `BiLSTMTagger`, `BiLSTMClassifier`
text.py      words (+ characters, + pretrained vectors) -> `TextEncoder` -> `TextTagger`
             (softmax or CRF) or `TextClassifier`
forecast.py  multi-horizon forecasters: `Forecaster`, `WindowForecaster`
"""

from bilstm_jax.models.config import ModelConfig
from bilstm_jax.models.forecast import ForecastConfig, Forecaster, WindowForecaster
from bilstm_jax.models.sequence import (
  BiLSTMClassifier,
  BiLSTMRegressor,
  BiLSTMTagger,
  EncoderConfig,
)
from bilstm_jax.models.text import (
  CharCNN,
  CharLSTM,
  TextClassifier,
  TextEncoder,
  TextEncoderConfig,
  TextTagger,
)

__all__ = [
  'BiLSTMClassifier',
  'BiLSTMRegressor',
  'BiLSTMTagger',
  'CharCNN',
  'CharLSTM',
  'EncoderConfig',
  'ForecastConfig',
  'Forecaster',
  'ModelConfig',
  'TextClassifier',
  'TextEncoder',
  'TextEncoderConfig',
  'TextTagger',
  'WindowForecaster',
]
