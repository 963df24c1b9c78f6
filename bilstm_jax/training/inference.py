"""`train.py --mode=evaluate` and `--mode=predict`: a trained checkpoint on a split or file."""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bilstm_jax import tasks
from bilstm_jax.data import batching as data_lib
from bilstm_jax.data import files as datafiles
from bilstm_jax.ensembles import ensemble
from bilstm_jax.errors import CheckpointError
from bilstm_jax.training import loop as train_lib

SPLITS = ('train', 'dev')


def load_state(config, workdir: str, which: str = 'best') -> tuple[train_lib.TrainState, str]:
  """The params of the best (by `train.metric`) or latest checkpoint of `workdir`.

  The model is built from `config`; a checkpoint of another model shape is an error. For
  a config with an `ensemble` block the params are the stacked members' (leading axis N).

  Returns:
    (a TrainState holding the params, the checkpoint's path).
  """
  if which not in ('best', 'latest'):
    raise ValueError(f"--checkpoint must be 'best' or 'latest'; got {which!r}.")
  task = tasks.get_task(config.data.task)
  model = task.make_model(config.model, config.data)
  sample = jnp.zeros((1, config.data.seq_len, config.data.input_size), jnp.float32)
  lengths = jnp.ones((1,), jnp.int32)

  def init(key):
    return model.init(key, sample, lengths)['params']

  if train_lib.is_ensemble(config):
    keys = jax.random.split(jax.random.key(0), config.ensemble.num_members)
    params_like = jax.eval_shape(jax.vmap(init), keys)
  else:
    params_like = jax.eval_shape(init, jax.random.key(0))
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    raise CheckpointError(f'No checkpoints in {directory}; train first (--mode=train).')
  ckpts = train_lib.open_checkpoints(config, workdir, read_only=True)
  try:
    step = ckpts.best_step() if which == 'best' else ckpts.latest_step()
    if step is None:
      raise CheckpointError(f'No complete checkpoint in {directory}; train first.')
    params = ckpts.restore_params(step, params_like)
    path = ckpts.path(step)
  finally:
    ckpts.close()
  state = train_lib.TrainState.create(apply_fn=model.apply, params=params, tx=optax.identity())
  return state, path


def load_data(config, name: str, need_targets: bool) -> dict:
  """A split of the config's task ('train', 'dev') or a data file (see `datafiles`)."""
  if name in SPLITS:
    return tasks.get_task(config.data.task).load(config.data, name)
  return datafiles.read(name, config.data.input_size, need_targets)


def evaluate(config, workdir: str, which: str = 'best') -> dict:
  """Loss of a checkpoint on `config.data.test`; prints one JSON line, writes evaluate.json."""
  state, path = load_state(config, workdir, which)
  dataset = load_data(config, config.data.test, need_targets=True)
  loss_fn = tasks.get_task(config.data.task).loss_fn
  extra = {}
  if train_lib.is_ensemble(config):
    # The ensemble's loss is that of the members' mean prediction; each member's is listed.
    losses = ensemble.evaluate(
      jax.jit(ensemble.make_eval_fn(loss_fn)), state, dataset, config.train.batch_size
    )
    loss = losses['ensemble_loss']
    member = losses['member_loss']
    extra = {'member_loss': member.tolist(), 'best_member': int(np.nanargmin(member))}
  else:
    eval_fn = jax.jit(functools.partial(train_lib.eval_step, loss_fn=loss_fn))
    loss = train_lib.evaluate(eval_fn, state, dataset, config.train.batch_size)
  variance = train_lib.target_variance(dataset)
  result = {
    'data': config.data.test,
    'checkpoint': path,
    'step': int(os.path.basename(path)),
    'num_examples': len(dataset['lengths']),
    'loss': loss,
    'target_variance': variance,
    'loss_over_variance': loss / variance if variance > 0 else None,
    **extra,
  }
  print(json.dumps(result))
  train_lib.write_json(os.path.join(workdir, 'evaluate.json'), result)
  return result


def predict_dataset(state, dataset: dict, batch_size: int, members: bool = False) -> np.ndarray:
  """Model outputs float32[n, time, outputs] for every example, in order.

  With `members=True` (stacked ensemble params), every member's: float32[N, n, time, out].
  """
  if members:
    apply = jax.jit(lambda state, x, n: ensemble.predict(state, x, n))
    axis = 1
  else:
    apply = jax.jit(lambda state, x, n: state.apply_fn({'params': state.params}, x, n))
    axis = 0
  outs = [
    np.asarray(apply(state, b['inputs'], b['lengths']))
    for b in data_lib.batches(dataset, batch_size, shuffle=False, drop_remainder=False)
  ]
  return np.take(np.concatenate(outs, axis), np.arange(len(dataset['lengths'])), axis)


def predict(config, workdir: str, input_path: str, output_path: str, which: str = 'best') -> str:
  """Writes predictions for `input_path` (a file or split) to `output_path`; returns it."""
  if not output_path:
    raise ValueError('--mode=predict needs --output (a .jsonl or .npz path).')
  state, path = load_state(config, workdir, which)
  dataset = load_data(config, input_path, need_targets=False)
  if train_lib.is_ensemble(config):
    # The members' mean prediction, and their spread as an uncertainty estimate.
    members = predict_dataset(state, dataset, config.train.batch_size, members=True)
    preds, std = members.mean(0), members.std(0)
  else:
    preds, std = predict_dataset(state, dataset, config.train.batch_size), None
  datafiles.write_predictions(output_path, preds, dataset['lengths'], std=std)
  print(
    json.dumps(
      {'input': input_path, 'output': output_path, 'checkpoint': path, 'num_examples': len(preds)}
    )
  )
  return output_path
