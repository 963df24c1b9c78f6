"""bilstm_jax: a fast, PyTorch-compatible bidirectional LSTM for JAX/Flax, and the tasks,
training and inference around it.

The names below are the public API; submodules load when first used, so importing the
package (and `train.py --help`) stays quick.

  layers       BiLSTM, MaskedBatchNorm (`bilstm_jax.nn`)
  models       BiLSTMRegressor, BiLSTMTagger, BiLSTMClassifier (`bilstm_jax.models`: every
               model family and its typed config)
  heads        CRF (a linear-chain CRF for any per-step logits)
  training     TrainState, create_train_state, train_step, train_steps, eval_step
  ensembles    member_keys, create_members, make_train_steps, get_member, shard_members
  trained runs load (-> Trained: predict records, evaluate); predict_sentences (deprecated)
  interop      lstm_from_torch, lstm_to_torch, dense_from_torch, dense_to_torch,
               regressor_from_torch, regressor_to_torch
  runtime      tune_cpu
"""

from __future__ import annotations

import importlib

from bilstm_jax._version import __version__

_EXPORTS = {
  'BiLSTM': 'bilstm_jax.nn.lstm',
  'MaskedBatchNorm': 'bilstm_jax.nn.norm',
  'BiLSTMRegressor': 'bilstm_jax.models',
  'BiLSTMTagger': 'bilstm_jax.models',
  'BiLSTMClassifier': 'bilstm_jax.models',
  'CRF': 'bilstm_jax.heads.crf',
  'TrainState': 'bilstm_jax.training.steps',
  'create_train_state': 'bilstm_jax.training.steps',
  'train_step': 'bilstm_jax.training.steps',
  'train_steps': 'bilstm_jax.training.steps',
  'eval_step': 'bilstm_jax.training.steps',
  'member_keys': 'bilstm_jax.ensembles.ensemble',
  'create_members': 'bilstm_jax.ensembles.ensemble',
  'make_train_steps': 'bilstm_jax.ensembles.ensemble',
  'get_member': 'bilstm_jax.ensembles.ensemble',
  'shard_members': 'bilstm_jax.ensembles.ensemble',
  'load': 'bilstm_jax.training.inference',
  'Trained': 'bilstm_jax.training.inference',
  'predict_sentences': 'bilstm_jax.readable',
  'lstm_from_torch': 'bilstm_jax.interop.pytorch',
  'lstm_to_torch': 'bilstm_jax.interop.pytorch',
  'dense_from_torch': 'bilstm_jax.interop.pytorch',
  'dense_to_torch': 'bilstm_jax.interop.pytorch',
  'regressor_from_torch': 'bilstm_jax.interop.pytorch',
  'regressor_to_torch': 'bilstm_jax.interop.pytorch',
  'tune_cpu': 'bilstm_jax.runtime',
}
_SUBMODULES = (
  'app',
  'cli',
  'data',
  'ensembles',
  'errors',
  'heads',
  'interop',
  'models',
  'nn',
  'parallel',
  'runtime',
  'tasks',
  'training',
)

# Modules that register how their runs load with training.inference (an ensemble's
# stacked members), imported before `load` resolves so it loads every kind of run.
_RUN_KINDS = ('bilstm_jax.ensembles.trained',)

__all__ = sorted(_EXPORTS) + ['__version__']


def __getattr__(name: str):
  if name in _EXPORTS:
    if _EXPORTS[name] == 'bilstm_jax.training.inference':
      for module in _RUN_KINDS:
        importlib.import_module(module)
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
  if name in _SUBMODULES:
    return importlib.import_module(f'bilstm_jax.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


def __dir__() -> list[str]:
  return sorted(set(__all__) | set(_SUBMODULES))
