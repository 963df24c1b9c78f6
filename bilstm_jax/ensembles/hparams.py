"""The members' hyperparameters: their ranges in a config, and the values drawn from them.

Each name in `HPARAMS` has a (low, high) range in the config's `ensemble` block. A range of
None (what `configs/default.py:seed_ensemble` sets) means the config's own value, the key
`OWN_KEYS` names. It is read when the run starts, after the command line, so
`--config.model.dropout=0.5` on an ensemble variant reaches every member. An explicit
range replaces that value for the members, and must contain it: a config value outside
the range its members use would be silently ignored, so that is a `ConfigError` naming
both keys (`member_ranges`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bilstm_jax import errors

HPARAMS = ('learning_rate', 'weight_decay', 'dropout', 'init_scale')
# Where a range of None takes its value from, and that value when the config lacks the key.
OWN_KEYS = {
  'learning_rate': ('optim.learning_rate', None),
  'weight_decay': ('optim.weight_decay', 0.0),
  'dropout': ('model.dropout', 0.0),
  'init_scale': (None, 1.0),
}


def member_ranges(config, check: bool = True) -> dict[str, tuple[float, float]]:
  """(low, high) for every name in `HPARAMS`, from the config as it stands now.

  Args:
    config: a config with an `ensemble` block (after the command line is applied).
    check: raise when an explicit range leaves out the config's own value. Loading a
      trained run passes False: its members were trained with the range it holds.

  Raises:
    errors.ConfigError: a range that is not (low, high), or (check) one that does not
      contain the config's own value, e.g. `config.model.dropout=0.5` with
      `config.ensemble.dropout=(0.1, 0.1)`.
  """
  out = {}
  for name in HPARAMS:
    key, default = OWN_KEYS[name]
    own = default
    if key is not None:
      block, field = key.split('.')
      own = config[block].get(field, default)
    given = config.ensemble.get(name)
    if given is None:
      out[name] = (float(own), float(own))
      continue
    if not isinstance(given, tuple | list) or len(given) != 2 or None in given:
      raise errors.ConfigError(
        f'config.ensemble.{name}={given!r}: must be (low, high), or None for config.{key}.'
      )
    low, high = (float(v) for v in given)
    if check and key is not None and not low <= own <= high:
      raise errors.ConfigError(
        f'config.{key}={own!r} lies outside config.ensemble.{name}={tuple(given)!r}, the '
        f'range its members use: make them agree (a range of None uses {key}).'
      )
    out[name] = (low, high)
  return out


def sample_hparams(
  num_members: int, ranges: dict, sampling: str, seed: int
) -> dict[str, np.ndarray]:
  """float32[N] per hyperparameter from (low, high) ranges.

  Args:
    num_members: N.
    ranges: {name: (low, high)} for every name in `HPARAMS` (`member_ranges`).
    sampling: 'random' (each drawn independently, then sorted: member 0 smallest) or
      'grid' (evenly spaced, in log space where log-uniform).
    seed: the draw's seed.

  low == high gives a constant. Otherwise learning rate, weight decay and init scale are
  log-uniform when low > 0 (uniform if low == 0) and dropout is uniform.
  """
  n = num_members
  out = {}
  for k, name in enumerate(HPARAMS):
    low, high = (float(v) for v in ranges[name])
    if high < low:
      raise ValueError(f'ensemble.{name}: low {low} > high {high}.')
    log = name != 'dropout' and low > 0
    a, b = (np.log(low), np.log(high)) if log else (low, high)
    if sampling == 'grid':
      u = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    elif sampling == 'random':
      u = np.sort(np.random.default_rng([seed, 3, k]).uniform(size=n))
    else:
      raise ValueError(f"ensemble.sampling must be 'random' or 'grid'; got {sampling!r}.")
    v = a + (b - a) * u
    out[name] = (np.exp(v) if log else v).astype(np.float32)
  if not (out['dropout'].min() >= 0.0 and out['dropout'].max() < 1.0):
    raise ValueError('ensemble.dropout must lie in [0, 1).')
  return out


def with_dropout_layers(task, rates):
  """`task` whose model is built with the members' largest dropout rate.

  A nonzero static rate makes the model's dropout layers exist; each member's own rate
  (`rates[i]`) is substituted at call time (`ensemble.dropout_apply_fn`). Training a
  population and loading one build their model through here, so both have the same layers.

  Args:
    task: a task whose `model` config has a `dropout` field.
    rates: the members' rates (float[N]), or a (low, high) range.
  """
  model = dataclasses.replace(task.model, dropout=float(np.max(rates)))
  return dataclasses.replace(task, model=model)
