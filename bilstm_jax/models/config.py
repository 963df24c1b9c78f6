"""What every model family's typed config shares: reading a run config's `model` block.

Each family declares its options as a frozen dataclass deriving from `ModelConfig`
(`sequence.EncoderConfig`, `text.TextEncoderConfig`, `forecast.ForecastConfig`), and each
model class builds itself from one with `from_config(config, **sizes)`: the config gives
the options, the task the sizes it fitted to the training data. Modules never read a
ConfigDict; the config never holds a size.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Self

import jax.numpy as jnp

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def dtype_from_name(name: str) -> Any:
  """The JAX dtype a config names ('float32' or 'bfloat16').

  Raises:
    ValueError: for a name outside `DTYPES`.
  """
  if name not in DTYPES:
    raise ValueError(f'model.dtype must be one of {sorted(DTYPES)}; got {name!r}.')
  return DTYPES[name]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """Base of the typed model configs: a frozen dataclass of one family's options.

  A field reads the `model` key of its own name, or the key named by its metadata
  (`dataclasses.field(metadata={'key': 'word_vectors_trainable'})`) when the config's
  name differs from the model's. Change a value with `dataclasses.replace`.
  """

  @classmethod
  def from_config(cls, model_config) -> Self:
    """The typed options from a run config's `model` block, in one step.

    Args:
      model_config: the `model` block (an `ml_collections.ConfigDict` or a mapping).
        Keys this family has no field for are ignored (they belong to another family or
        to the task); a field whose key is absent keeps its default. An empty `impl`
        ('' in the configs) means the library default, None.

    Returns:
      The config, e.g. `EncoderConfig(hidden_size=8, num_layers=1, ...)`.
    """
    values = {}
    for field in dataclasses.fields(cls):
      key = field.metadata.get('key', field.name)
      if key in model_config:
        values[field.name] = model_config[key]
    if 'impl' in values:
      values['impl'] = values['impl'] or None
    return cls(**values)
