"""Tasks: which model head, loss and data reader a config names.

A new task is a new entry here (a head in `models`, a loss in `losses`, a reader in
`data` or a dataset module); the training loop in `train_lib` stays the same.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp

from bilstm_jax import losses, models
from bilstm_jax.data import batching as data


@dataclasses.dataclass(frozen=True)
class Task:
  """What the training loop needs to know about a task.

  Attributes:
    make_model: (model_config, data_config) -> a Flax module called as
      `module(inputs, lengths, deterministic=...)`.
    loss_fn: (predictions, batch) -> (sum, weight); the step minimises sum / weight.
    load: (data_config, split) -> a dataset dict of numpy arrays (see `bilstm_jax.data.batching`).
  """

  make_model: Callable[..., nn.Module]
  loss_fn: Callable
  load: Callable[..., dict]


_DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def dtype_from_name(name: str):
  if name not in _DTYPES:
    raise ValueError(f'Unknown dtype {name!r}; known: {sorted(_DTYPES)}.')
  return _DTYPES[name]


def make_regressor(model_config, data_config) -> models.BiLSTMRegressor:
  return models.BiLSTMRegressor(
    hidden_size=model_config.hidden_size,
    output_size=data_config.output_size,
    num_layers=model_config.num_layers,
    dropout=model_config.dropout,
    bidirectional=model_config.bidirectional,
    dtype=dtype_from_name(model_config.dtype),
    impl=model_config.get('impl') or None,
  )


_REGRESSION = Task(make_model=make_regressor, loss_fn=losses.masked_mse, load=data.synthetic)

TASKS: dict[str, Task] = {'seed_noise': _REGRESSION, 'bidir_window': _REGRESSION}


def get_task(name: str) -> Task:
  if name not in TASKS:
    raise ValueError(f'Unknown task {name!r}; known: {sorted(TASKS)}.')
  return TASKS[name]
