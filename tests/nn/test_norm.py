"""`MaskedBatchNorm`: statistics over valid steps only, against numpy and Flax's BatchNorm."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.nn import MaskedBatchNorm

MOMENTUM, EPS = 0.9, 1e-5


def ragged(seed: int, lengths, time: int, features: int = 3, pad_value=None):
  """x float32[b, time, f] with random values (or `pad_value`) past each length, the mask."""
  rng = np.random.default_rng(seed)
  x = rng.normal(2.0, 3.0, (len(lengths), time, features)).astype(np.float32)
  mask = np.arange(time)[None] < np.asarray(lengths)[:, None]
  if pad_value is not None:
    x = np.where(mask[..., None], x, pad_value).astype(np.float32)
  return x, mask


def train_apply(variables, x, mask):
  module = MaskedBatchNorm(momentum=MOMENTUM, epsilon=EPS)
  return module.apply(variables, x, mask, use_running_average=False, mutable=['batch_stats'])


def init(x, mask):
  module = MaskedBatchNorm(momentum=MOMENTUM, epsilon=EPS)
  return module.init(jax.random.key(0), x, mask, use_running_average=False)


def test_training_statistics_are_those_of_the_valid_steps():
  x, mask = ragged(0, [5, 2, 0, 3], 6)
  variables = init(x, mask)
  y, updates = train_apply(variables, x, mask)
  valid = x[mask]  # [valid steps, features]
  mean, var = valid.mean(0), valid.var(0)
  want = np.where(mask[..., None], (x - mean) / np.sqrt(var + EPS), 0.0)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
  stats = updates['batch_stats']
  np.testing.assert_allclose(stats['mean'], (1 - MOMENTUM) * mean, rtol=1e-5)
  np.testing.assert_allclose(stats['var'], MOMENTUM + (1 - MOMENTUM) * var, rtol=1e-5)


def test_padding_never_changes_outputs_or_statistics():
  lengths = [4, 1, 3]
  short, mask_short = ragged(1, lengths, 4)
  long = np.concatenate([short, np.full((3, 5, 3), 1e3, np.float32)], 1)  # garbage padding
  mask_long = np.arange(9)[None] < np.asarray(lengths)[:, None]
  variables = init(short, mask_short)
  y_short, up_short = train_apply(variables, short, mask_short)
  y_long, up_long = train_apply(variables, long, mask_long)
  np.testing.assert_allclose(y_long[:, :4], y_short, rtol=1e-6, atol=1e-6)
  assert not np.any(y_long[:, 4:])
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), up_short, up_long)


def test_matches_flax_batchnorm_without_padding():
  x, mask = ragged(2, [4, 4, 4], 4)
  variables = init(x, mask)
  flax_bn = nn.BatchNorm(momentum=MOMENTUM, epsilon=EPS, use_running_average=False)
  flax_vars = flax_bn.init(jax.random.key(0), x)
  want, flax_up = flax_bn.apply(flax_vars, x, mutable=['batch_stats'])
  got, up = train_apply(variables, x, mask)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(up['batch_stats']['mean'], flax_up['batch_stats']['mean'], 1e-5)
  np.testing.assert_allclose(up['batch_stats']['var'], flax_up['batch_stats']['var'], 1e-5)


def test_evaluation_uses_the_running_statistics():
  x, mask = ragged(3, [3, 2], 3)
  variables = init(x, mask)
  _, updates = train_apply(variables, x, mask)
  variables = {**variables, **updates}
  y = MaskedBatchNorm(momentum=MOMENTUM, epsilon=EPS).apply(
    variables, x, mask, use_running_average=True
  )
  stats = variables['batch_stats']
  want = (x - np.asarray(stats['mean'])) / np.sqrt(np.asarray(stats['var']) + EPS)
  np.testing.assert_allclose(y, np.where(mask[..., None], want, 0.0), rtol=1e-5, atol=1e-5)


def test_an_all_padding_batch_leaves_the_running_statistics():
  x, mask = ragged(4, [2, 3], 3)
  variables = init(x, mask)
  _, updates = train_apply(variables, x, mask)
  variables = {**variables, **updates}
  y, again = train_apply(variables, x, np.zeros_like(mask))
  assert not np.any(y)
  jax.tree.map(np.testing.assert_array_equal, again['batch_stats'], variables['batch_stats'])


def test_gradients_flow_through_the_batch_statistics():
  """The batch mean is part of the graph: outputs' gradient sums to ~0 over valid steps."""
  x, mask = ragged(5, [3, 2], 3)
  variables = init(x, mask)

  def total(x):
    y, _ = train_apply(variables, x, mask)
    return y.sum()

  g = jax.grad(total)(jnp.asarray(x))
  # d/dx of sum over valid steps of (x - mean)/std: zero for every valid x (the
  # normalised values sum to zero), exactly zero at padding.
  np.testing.assert_allclose(g, 0.0, atol=1e-4)


def test_text_encoder_batch_norm_keeps_padding_out():
  from bilstm_jax.models.text import TextEncoder

  enc = TextEncoder(vocab_size=9, hidden_size=4, num_layers=2, embed_size=3, norm='batch')
  rng = np.random.default_rng(6)
  lengths = np.array([4, 2], np.int32)
  words = np.where(np.arange(4)[None] < lengths[:, None], rng.integers(2, 9, (2, 4)), 0)
  longer = np.concatenate([words, np.full((2, 3), 5)], 1)  # other ids in the padding
  variables = enc.init(jax.random.key(0), words, lengths)
  assert set(variables['batch_stats']) == {'norm_0'}  # between the two layers only
  kwargs = {
    'mutable': ['batch_stats'],
    'deterministic': False,
    'rngs': {'dropout': jax.random.key(1)},
  }
  out, up = enc.apply(variables, words, lengths, **kwargs)
  out_long, up_long = enc.apply(variables, longer, lengths, **kwargs)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), up, up_long)
  np.testing.assert_allclose(out_long[:, :4], out, rtol=1e-5, atol=1e-6)
  assert not np.any(out_long[:, 4:])
