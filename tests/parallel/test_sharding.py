"""Meshes and shardings: the sharded train step against the single-device one.

The 8-device checks run in one subprocess (this file run as a script with
`XLA_FLAGS=--xla_force_host_platform_device_count=8`), because the device count is fixed
when JAX starts; the tests below read its JSON report.
"""

import functools
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bilstm_jax.data import batching as data
from bilstm_jax.parallel import sharding
from configs import default
from tests.utils import synthetic, task_and_data

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = 1e-5


def test_mesh_shape_fills_data_and_checks_sizes():
  assert sharding.mesh_shape(None, 8) == {'member': 1, 'data': 8, 'model': 1}
  assert sharding.mesh_shape({'member': 2}, 8) == {'member': 2, 'data': 4, 'model': 1}
  assert sharding.mesh_shape({'data': 2, 'model': -1}, 8) == {'member': 1, 'data': 2, 'model': 4}
  with pytest.raises(ValueError, match='Unknown mesh axes'):
    sharding.mesh_shape({'batch': 2}, 8)
  with pytest.raises(ValueError, match='do not divide'):
    sharding.mesh_shape({'member': 3}, 8)
  with pytest.raises(ValueError, match='needs 4 devices'):
    sharding.mesh_shape({'data': 4}, 8)
  with pytest.raises(ValueError, match='at most one -1'):
    sharding.mesh_shape({'data': -1, 'model': -1}, 8)


def test_param_spec_splits_largest_divisible_axis():
  assert sharding.param_spec((2, 8, 32), 1) == (None, None, None)
  assert sharding.param_spec((2, 8, 32), 4) == (None, None, 'model')
  assert sharding.param_spec((16, 1), 2) == ('model', None)
  assert sharding.param_spec((3,), 2) == (None,)
  assert sharding.param_spec((), 2) == ()


def test_uneven_batch_is_a_clear_error():
  mesh = sharding.make_mesh()  # one device here: every batch size divides
  sharding.check_batch_size(3, mesh)

  class FakeMesh:
    shape = {'member': 1, 'data': 8, 'model': 1}

  with pytest.raises(ValueError, match='does not divide over the mesh.s data axis of 8'):
    sharding.check_batch_size(12, FakeMesh())


@pytest.mark.parametrize('drop_remainder', [True, False])
def test_process_rows_concatenate_to_the_global_batches(drop_remainder):
  cfg = default.get_config()
  cfg.data.num_train = 21
  cfg.data.min_length = 2
  ds = synthetic(cfg, 'train')
  kwargs = dict(seed=3, epoch=2, shuffle=True, drop_remainder=drop_remainder)
  full = list(data.batches(ds, 8, **kwargs))
  plan = data.epoch_plan(ds['lengths'], 8, **kwargs)
  keys = ('inputs', 'targets')
  halves = [
    sharding.process_batches(ds, plan, rows, keys) for rows in (np.arange(0, 4), np.arange(4, 8))
  ]
  assert len(full) == len(halves[0]) == (2 if drop_remainder else 3)
  for b, lo, hi in zip(full, *halves, strict=True):
    for k in b:
      np.testing.assert_array_equal(np.concatenate([lo[k], hi[k]]), b[k])


def _worker() -> dict:
  """Runs in a subprocess with 8 CPU devices; returns max |difference| per check."""
  import jax

  from bilstm_jax import app
  from bilstm_jax.ensembles import ensemble
  from bilstm_jax.training import optim
  from bilstm_jax.training import steps as train_lib

  assert jax.device_count() == 8, jax.devices()
  cfg = default.get_config()
  cfg.data.min_length = 3  # ragged lengths, so masking takes part
  task, train_set = task_and_data(cfg)
  batch_size = cfg.train.batch_size
  batches = list(data.batches(train_set, batch_size, epoch=1))
  stacked = data.stack(batches[:3])
  tx = optim.make_optimizer(app.optimizer_spec(cfg.optim))
  model = task.make_model()
  inputs = task.model_inputs(batches[0])
  rng = jax.random.key(1)

  def max_diff(a, b):
    leaves = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in leaves)

  def mean_loss(metrics):
    return np.asarray(metrics['loss_sum']) / np.maximum(np.asarray(metrics['weight']), 1.0)

  def compare(fn, state, batch, rngs, mesh_config, batch_axis, member_axis=False):
    ref_state, ref_metrics = jax.jit(fn)(state, batch, rngs)
    mesh = sharding.make_mesh(**mesh_config)
    shardings = sharding.state_sharding(state, mesh, member_axis=member_axis)
    step = sharding.jit_step(fn, mesh, shardings, batch_axis=batch_axis, donate=False)
    placed = sharding.put_batch(batch, mesh, batch_size, batch_axis)
    rows = {s.data.shape[batch_axis] for s in placed['inputs'].addressable_shards}
    assert rows == {batch_size // mesh.shape['data']}, rows  # each device: its share only
    out_state, out_metrics = step(
      sharding.put(state, shardings), placed, sharding.put(rngs, sharding.replicated(mesh))
    )
    params_sharded = any(
      any(s is not None for s in x.sharding.spec) for x in jax.tree.leaves(out_state.params)
    )
    return {
      # The mean loss (sum / weight): a float32 sum of ~500 squared errors is only exact
      # to ~1e-7 relative, whatever the order in which devices add it up.
      'loss': max_diff(mean_loss(ref_metrics), mean_loss(out_metrics)),
      'loss_sum_rel': max_diff(ref_metrics['loss_sum'], out_metrics['loss_sum'])
      / float(np.max(np.abs(ref_metrics['loss_sum']))),
      'params': max_diff(ref_state.params, out_state.params),
      'opt_state': max_diff(ref_state.opt_state, out_state.opt_state),
      'params_sharded': params_sharded,
      'mesh': dict(mesh.shape),
    }

  state = train_lib.create_train_state(jax.random.key(0), model, tx, inputs)
  one_step = functools.partial(train_lib.train_step, task=task)
  many_steps = functools.partial(train_lib.train_steps, task=task)
  report = {
    'data_train_step': compare(one_step, state, batches[0], rng, {'data': 8}, 0),
    'data_train_steps': compare(many_steps, state, stacked, rng, {'data': 8}, 1),
    'data_model_train_steps': compare(many_steps, state, stacked, rng, {'data': 4, 'model': 2}, 1),
  }

  # An ensemble (bilstm_jax.ensembles.ensemble): a stacked TrainState of 2 members with different
  # inits and dropout keys, trained by its vmapped `train_steps`; the members are split
  # over `member`, each member's batch over `data`. Shared batches [S, B, ...] and
  # per-member batches [N, S, B, ...].
  members = 2
  cfg.model.dropout = 0.25
  cfg.model.num_layers = 2
  task, _ = task_and_data(cfg)
  model = task.make_model()
  init_keys, step_keys = ensemble.member_keys(0, members)
  stacked_state = ensemble.create_members(init_keys, model, tx, inputs)
  mesh = sharding.make_mesh(member=members, data=4)
  for name, shared, batch in [
    ('data_member_shared', True, stacked),
    ('data_member_per_member', False, data.stack([data.stack(batches[3:6]), stacked])),
  ]:
    steps = ensemble.make_train_steps(task, shared_data=shared, donate=False)
    ref_state, ref_metrics = steps(stacked_state, batch, step_keys, None)
    shardings = sharding.member_sharding(stacked_state, mesh)
    out_state, out_metrics = steps(
      sharding.put(stacked_state, shardings),
      sharding.put_batch(batch, mesh, batch_size, *((1, None) if shared else (2, 0))),
      sharding.put(step_keys, sharding.member_sharding(step_keys, mesh)),
      None,
    )
    kernel = out_state.params['lstm']['layer_0']['w_hh']
    report[name] = {
      'loss': max_diff(mean_loss(ref_metrics), mean_loss(out_metrics)),
      'params': max_diff(ref_state.params, out_state.params),
      'opt_state': max_diff(ref_state.opt_state, out_state.opt_state),
      'member_split': {s.data.shape[0] for s in kernel.addressable_shards} == {1},
      'mesh': dict(mesh.shape),
    }
  report.update(_shard_map_checks(batches[0], max_diff))
  return report


def _shard_map_checks(batch: dict, max_diff) -> dict:
  """BiLSTM inside a user's `jax.shard_map` (its default `check_vma=True`), 8-way over the
  batch: the gradient of the psum'd loss and a forward-mode derivative, each against the
  same on the whole batch in one program; relative max |difference| per impl."""
  import jax
  import jax.numpy as jnp
  from jax.sharding import PartitionSpec as P

  from bilstm_jax.nn import lstm

  mesh = sharding.make_mesh(data=8)
  x, n = jnp.asarray(batch['inputs']), jnp.asarray(batch['lengths'])
  report = {}
  for impl in ('native', 'fused', 'reference'):
    layer = lstm.BiLSTM(8, num_layers=2, impl=impl)
    params = layer.init(jax.random.key(2), x, n)
    tangent = jax.tree.map(jnp.ones_like, params)

    def loss(p, x, n, layer=layer):
      return jnp.sum(layer.apply(p, x, n)[0] ** 2)

    def total(p, x, n, loss=loss):  # per device: its rows' loss, summed over devices
      return jax.lax.psum(loss(p, x, n), 'data')

    def grad_and_jvp(p, x, n, total=total, tangent=tangent):
      _, d = jax.jvp(lambda p: total(p, x, n), (p,), (tangent,))
      return jax.grad(total)(p, x, n), d

    split = jax.shard_map(
      grad_and_jvp, mesh=mesh, in_specs=(P(), P('data'), P('data')), out_specs=(P(), P())
    )
    try:
      grads, d = jax.jit(split)(params, x, n)
    except Exception as e:  # reported per impl; the other checks still run
      report[f'shard_map_{impl}'] = {'error': f'{type(e).__name__}: {str(e)[:500]}'}
      continue
    ref_grads = jax.jit(jax.grad(loss))(params, x, n)
    _, ref_d = jax.jit(lambda p, t, loss=loss: jax.jvp(lambda p: loss(p, x, n), (p,), (t,)))(
      params, tangent
    )
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ref_grads))
    report[f'shard_map_{impl}'] = {
      'grad': max_diff(grads, ref_grads) / scale,
      'jvp': abs(float(d) - float(ref_d)) / abs(float(ref_d)),
    }
  return report


@pytest.fixture(scope='module')
def eight_device_report():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8', PYTHONPATH=ROOT)
  env.pop('JAX_PLATFORMS', None)
  proc = subprocess.run(
    [sys.executable, os.path.abspath(__file__), '--worker'],
    capture_output=True,
    text=True,
    env=env,
    cwd=ROOT,
    timeout=300,
  )
  assert proc.returncode == 0, proc.stderr[-4000:]
  return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize('check', ['data_train_step', 'data_train_steps', 'data_model_train_steps'])
def test_sharded_step_matches_one_device(eight_device_report, check):
  r = eight_device_report[check]
  assert r['loss'] < TOL and r['params'] < TOL and r['opt_state'] < TOL, r
  assert r['params_sharded'] == (r['mesh']['model'] > 1), r


@pytest.mark.slow
@pytest.mark.parametrize('check', ['data_member_shared', 'data_member_per_member'])
def test_data_member_mesh_matches_one_device(eight_device_report, check):
  r = eight_device_report[check]
  assert r['mesh'] == {'member': 2, 'data': 4, 'model': 1}
  assert r['loss'] < TOL and r['params'] < TOL and r['opt_state'] < TOL, r
  assert r['member_split'], 'the output state should stay split over the member axis'


@pytest.mark.slow
@pytest.mark.parametrize('impl', ['native', 'fused', 'reference'])
def test_layer_inside_shard_map_matches_one_device(eight_device_report, impl):
  # Before the layers typed their loops and kernel results by the mesh axes they vary
  # over, 'native' gave a wrong gradient here and the scans raised a carry type error.
  r = eight_device_report[f'shard_map_{impl}']
  assert 'error' not in r and r['grad'] < TOL and r['jvp'] < TOL, r


if __name__ == '__main__' and sys.argv[1:] == ['--worker']:
  print(json.dumps(_worker()))
