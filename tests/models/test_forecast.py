"""The multi-horizon Forecaster (bilstm_jax.models.forecast) and instance normalisation
(bilstm_jax.heads.forecast)."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bilstm_jax.heads.forecast import instance_denorm, instance_norm
from bilstm_jax.models.forecast import Forecaster


def series(batch=2, steps=7, channels=3, seed=0):
  """Sines of different phases and levels: float32[batch, steps, channels]."""
  rng = np.random.default_rng(seed)
  t = np.arange(steps)[None, :, None]
  phase = rng.uniform(0, 6, (batch, 1, channels))
  level = rng.uniform(-3, 3, (batch, 1, channels))
  return jnp.asarray(np.sin(0.7 * t + phase) + level, jnp.float32)


@pytest.mark.parametrize('mode', ['none', 'last', 'mean', 'revin'])
def test_instance_norm_round_trip(mode):
  x = series()
  normed, stats = instance_norm(x, mode)
  np.testing.assert_allclose(instance_denorm(normed, stats), x, rtol=1e-5, atol=1e-5)
  if mode == 'last':
    np.testing.assert_array_equal(normed[:, -1], 0)
  if mode in ('mean', 'revin'):
    np.testing.assert_allclose(normed.mean(1), 0, atol=1e-6)
  if mode == 'revin':
    np.testing.assert_allclose(normed.std(1), 1, rtol=1e-4)
  with pytest.raises(ValueError, match='Unknown norm'):
    instance_norm(x, 'minmax')


@pytest.mark.parametrize(
  'kwargs, params_per_channel',
  [
    ({}, True),
    ({'head_input': 'final'}, True),
    ({'channel_independent': True}, False),
    ({'channel_independent': True, 'norm': 'mean', 'num_layers': 2}, False),
    ({'bidirectional': False, 'norm': 'revin'}, True),
  ],
)
def test_forecaster_shapes(kwargs, params_per_channel):
  model = Forecaster(hidden_size=4, horizon=5, out_channels=3, **kwargs)
  x = series()
  params = model.init(jax.random.key(0), x)
  y = model.apply(params, x)
  assert y.shape == (2, 5, 3) and y.dtype == jnp.float32
  assert bool(jnp.isfinite(y).all())
  w_ih = params['params']['lstm']['layer_0']['w_ih']
  assert w_ih.shape[1] == (3 if params_per_channel else 1)


def test_channel_independent_equals_each_channel_alone():
  kwargs = {'hidden_size': 4, 'horizon': 3, 'channel_independent': True, 'norm': 'last'}
  x = series(channels=3)
  params = Forecaster(out_channels=3, **kwargs).init(jax.random.key(1), x)
  together = Forecaster(out_channels=3, **kwargs).apply(params, x)
  for k in range(3):
    alone = Forecaster(out_channels=1, **kwargs).apply(params, x[:, :, k : k + 1])
    np.testing.assert_allclose(together[:, :, k], alone[:, :, 0], rtol=1e-5, atol=1e-6)
  # One target channel out of three: the same numbers, only that channel kept.
  one = Forecaster(out_channels=1, target_index=(2,), **kwargs).apply(params, x)
  np.testing.assert_allclose(one[:, :, 0], together[:, :, 2], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('norm', ['last', 'mean', 'revin'])
def test_normalised_forecasts_follow_the_level(norm):
  # Shifting a window shifts its forecast by the same amount; with 'revin' scaling it
  # scales the forecast too. Without normalisation neither holds.
  model = Forecaster(hidden_size=4, horizon=3, out_channels=2, norm=norm)
  x = series(channels=2)
  params = model.init(jax.random.key(2), x)
  y = model.apply(params, x)
  np.testing.assert_allclose(model.apply(params, x + 5.0), y + 5.0, rtol=1e-5, atol=1e-4)
  if norm == 'revin':
    np.testing.assert_allclose(model.apply(params, 3.0 * x), 3.0 * y, rtol=1e-4, atol=1e-4)
  plain = Forecaster(hidden_size=4, horizon=3, out_channels=2)
  plain_params = plain.init(jax.random.key(2), x)
  shifted = plain.apply(plain_params, x + 5.0) - plain.apply(plain_params, x)
  assert not np.allclose(shifted, 5.0, atol=1e-2)


def test_target_index_selects_the_statistics_of_its_channel():
  model = Forecaster(hidden_size=4, horizon=2, out_channels=1, norm='last', target_index=(2,))
  x = series(channels=3)
  params = model.init(jax.random.key(3), x)
  y = model.apply(params, x)
  assert y.shape == (2, 2, 1)
  np.testing.assert_allclose(model.apply(params, x.at[:, :, 2].add(4.0)), y + 4.0, rtol=1e-5)
  np.testing.assert_allclose(model.apply(params, x.at[:, :, 0].add(4.0)), y, rtol=1e-5)


@pytest.mark.parametrize('channel_independent', [False, True])
def test_segments_are_embedded_and_read_one_per_step(channel_independent):
  # 12 steps in segments of 4: the LSTM reads 3 steps of Dense(hidden) features, and the
  # flatten head reads 3 * 2 * hidden. The forecast of a window depends on its segments
  # as a whole; changing one step of the first segment changes it.
  channels, hidden = 3, 5
  model = Forecaster(
    hidden_size=hidden,
    horizon=2,
    out_channels=channels,
    segment_len=4,
    norm='last',
    channel_independent=channel_independent,
  )
  x = series(steps=12, channels=channels)
  params = model.init(jax.random.key(0), x)['params']
  per_sequence = 1 if channel_independent else channels
  assert params['segment_embed']['kernel'].shape == (4 * per_sequence, hidden)
  assert params['lstm']['layer_0']['w_ih'].shape[1] == hidden
  assert params['head']['kernel'].shape == (3 * 2 * hidden, 2 * per_sequence)
  y = model.apply({'params': params}, x)
  assert y.shape == (2, 2, channels)
  assert not np.allclose(model.apply({'params': params}, x.at[:, 0, :].add(1.0)), y)
  # Each step is its own segment: the same as an LSTM over steps behind a Dense + ReLU.
  ones = Forecaster(hidden_size=hidden, horizon=2, out_channels=channels, segment_len=1)
  assert ones.init(jax.random.key(0), x)['params']['segment_embed']['kernel'].shape == (
    channels,
    hidden,
  )
  with pytest.raises(ValueError, match='segment_len 5 does not divide the window length 12'):
    Forecaster(hidden_size=4, horizon=2, out_channels=channels, segment_len=5).init(
      jax.random.key(0), x
    )


def test_bad_settings_are_explained():
  x = series(channels=3)
  with pytest.raises(ValueError, match='set target_index'):
    Forecaster(hidden_size=4, horizon=2, out_channels=1, norm='last').init(jax.random.key(0), x)
  with pytest.raises(ValueError, match='names 2 channels'):
    Forecaster(hidden_size=4, horizon=2, out_channels=1, target_index=(0, 1)).init(
      jax.random.key(0), x
    )
  with pytest.raises(ValueError, match='Unknown head_input'):
    Forecaster(hidden_size=4, horizon=2, out_channels=3, head_input='mean').init(
      jax.random.key(0), x
    )


def test_dropout_only_when_not_deterministic():
  model = Forecaster(hidden_size=4, horizon=2, out_channels=3, dropout=0.5)
  x = series()
  params = model.init(jax.random.key(0), x)
  rngs = {'dropout': jax.random.key(1)}
  np.testing.assert_array_equal(model.apply(params, x), model.apply(params, x, rngs=rngs))
  assert not np.allclose(
    model.apply(params, x, deterministic=False, rngs=rngs), model.apply(params, x)
  )


@pytest.mark.slow
def test_forecaster_fits_a_sine():
  start = time.perf_counter()
  input_len, horizon = 16, 4
  t = np.arange(400.0)
  wave = np.sin(2 * np.pi * t / 25)[:, None]
  starts = np.arange(0, 400 - input_len - horizon, 3)
  inputs = jnp.asarray(np.stack([wave[s : s + input_len] for s in starts]), jnp.float32)
  targets = jnp.asarray(
    np.stack([wave[s + input_len : s + input_len + horizon] for s in starts]), jnp.float32
  )
  model = Forecaster(hidden_size=8, horizon=horizon, out_channels=1, head_input='final')
  params = model.init(jax.random.key(0), inputs[:1])
  opt = optax.adam(1e-2)
  opt_state = opt.init(params)

  def loss_fn(params):
    return jnp.mean((model.apply(params, inputs) - targets) ** 2)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = opt.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  first = float(loss_fn(params))
  for _ in range(300):
    params, opt_state, loss = step(params, opt_state)
  assert float(loss) < 1e-3 < first, (first, float(loss))
  assert time.perf_counter() - start < 20
