"""Sweeps over structural hyperparameters: one compiled population per shape, one table.

Hidden size or layer count change the parameters' shapes, so members that differ in them
cannot share one vmapped program. A sweep config is an ensemble config
(`configs/ensemble.py`) plus a `sweep` block listing values of `model` fields; every
combination is trained as its own population (`train_fn`: the app's
`train_and_evaluate`, in `workdir/<shape>/`), and one table with a row per member of
every shape is written to `workdir/results.json` after each shape. A rerun with the
same workdir skips the shapes already in the table, so an interrupted sweep resumes at
the first unfinished shape (from that shape's newest checkpoint).

`train.py` runs a config with a `sweep` block through `run`, with the process settings
it gives every run:

  python train.py --config configs/sweep.py --workdir /tmp/sweep
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable

import ml_collections

from bilstm_jax import errors
from bilstm_jax.ensembles import population
from bilstm_jax.parallel import distributed
from bilstm_jax.training import workdir as workdir_lib


def shapes(sweep_config, model_config) -> list[dict]:
  """Every combination of the sweep block's values: [{'hidden_size': 4, ...}, ...]."""
  names = sorted(sweep_config.keys())
  for name in names:
    if name not in model_config:
      raise ValueError(f'sweep.{name} is not a model field; model has {sorted(model_config)}.')
  values = [tuple(sweep_config[n]) for n in names]
  return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]


def shape_name(shape: dict) -> str:
  """A shape's key in results.json: its fields sorted, e.g. 'hidden_size=8,num_layers=2'."""
  return ','.join(f'{k}={v}' for k, v in sorted(shape.items()))


def shape_config(config, shape: dict) -> ml_collections.ConfigDict:
  """The ensemble config of one shape: the sweep block removed, the model fields set."""
  d = config.to_dict()
  d.pop('sweep')
  d['model'].update(shape)
  return ml_collections.ConfigDict(d)


def _read(path: str) -> dict | None:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def run(config, workdir: str, train_fn: Callable[..., dict]) -> dict:
  """Trains every shape not yet in `workdir/results.json`; returns the whole results dict.

  Returns:
    {'base_config': the config without its sweep block, 'shapes': {name: per-shape
    summary without the member table}, 'rows': one dict per member of every shape
    (shape fields, hyperparameters, train and dev loss), 'best': the best row by dev loss}.

  Raises:
    errors.CheckpointError: `workdir` holds results of a sweep with another base config.
  """
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, 'results.json')
  base = config.to_dict()
  base.pop('sweep')
  base = json.loads(json.dumps(base))  # tuples as lists, as read back from the file
  results = _read(path) or {'base_config': base, 'shapes': {}, 'rows': []}
  if base != results['base_config']:
    raise errors.CheckpointError(
      f'{path} holds a sweep with another base config; use a new workdir.'
    )
  # In a multi-process run every process trains every shape; process 0 alone writes and prints.
  say = print if distributed.is_writer() else (lambda *args: None)
  todo = shapes(config.sweep, config.model)
  for shape in todo:
    name = shape_name(shape)
    if name in results['shapes']:
      say(f'[sweep] {name}: done before, skipped')
      continue
    say(f'[sweep] {name}: training {config.ensemble.num_members} members')
    summary = train_fn(shape_config(config, shape), os.path.join(workdir, name))
    results['rows'] += [{'shape': name, **shape, **row} for row in summary['members']]
    results['shapes'][name] = {k: v for k, v in summary.items() if k not in ('members', 'history')}
    results['best'] = population.best_member(results['rows'])
    if distributed.is_writer():
      workdir_lib.write_json(path, results)  # after every shape: the resume point
  columns = ('shape', 'member', 'learning_rate', 'train_loss', 'dev_loss')
  say(f'[sweep] {len(results["rows"])} members over {len(results["shapes"])} shapes:')
  say(population.format_table(results['rows'], columns))
  best = results['best']
  say(f'[sweep] best: {best["shape"]} member {best["member"]} dev loss {best["dev_loss"]:.6f}')
  return results
