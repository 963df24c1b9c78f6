"""Adversarial training on the text models' embeddings (`model.adversarial`)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bilstm_jax import models
from bilstm_jax.models.text import TextClassifier, TextEncoder
from bilstm_jax.training import steps

VOCAB, BATCH, TIME = 30, 4, 7


@dataclasses.dataclass(frozen=True)
class _Task:
  """A duck-typed classification task: what `train_step` asks of one."""

  adversarial: float = 0.0

  def model_inputs(self, batch):
    return (batch['inputs'], batch['lengths'])

  def loss(self, logits, batch):
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch['labels'])
    return nll.sum(), jnp.float32(len(nll))


def _batch(seed=0):
  rng = np.random.default_rng(seed)
  lengths = np.array([7, 3, 5, 1], np.int32)
  words = rng.integers(2, VOCAB, (BATCH, TIME)).astype(np.int32)
  words = np.where(np.arange(TIME)[None] < lengths[:, None], words, 0)
  return {'inputs': words, 'lengths': lengths, 'labels': np.array([0, 1, 1, 0], np.int32)}


def _state(size, tx=None):
  encoder = TextEncoder(vocab_size=VOCAB, hidden_size=5, embed_size=6, adversarial=size)
  model = TextClassifier(encoder, num_classes=2)
  batch = _batch()
  tx = tx or optax.sgd(1.0)
  return steps.create_train_state(jax.random.key(0), model, tx, _Task(size).model_inputs(batch))


def _loss(state, batch, task, perturbations):
  outputs, _ = steps.apply_model(state, state.params, batch, task, None, perturbations)
  total, weight = task.loss(outputs, batch)
  return float(total / weight)


def test_the_perturbation_has_the_size_and_each_examples_gradient_direction():
  g = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32) * 1e-7
  g[1] *= 1e6  # examples of very different gradient scales
  r = np.asarray(steps.adversarial_perturbation({'x': jnp.asarray(g)}, 0.7)['x'])
  np.testing.assert_allclose(np.linalg.norm(r.reshape(3, -1), axis=1), 0.7, rtol=1e-5)
  for i in range(3):
    cos = (r[i] * g[i]).sum() / np.linalg.norm(r[i]) / np.linalg.norm(g[i])
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)


def test_the_adversarial_perturbation_raises_the_loss_more_than_random_ones():
  task, batch = _Task(0.5), _batch()
  state = _state(0.5)
  assert steps.PERTURBATIONS not in state.model_state  # batch-shaped: never in the state
  zeros = steps.perturbation_zeros(state, batch, task)
  assert zeros['encoder']['embeddings'].shape == (BATCH, TIME, 6)
  toward = jax.grad(
    lambda p: task.loss(steps.apply_model(state, state.params, batch, task, None, p)[0], batch)[0]
  )(zeros)
  attack = steps.adversarial_perturbation(toward, 0.5)
  clean, attacked = _loss(state, batch, task, zeros), _loss(state, batch, task, attack)
  rng = np.random.default_rng(1)
  for _ in range(20):
    r = rng.normal(size=(BATCH, TIME, 6)).astype(np.float32)
    r *= 0.5 / np.linalg.norm(r.reshape(BATCH, -1), axis=1)[:, None, None]
    random = _loss(state, batch, task, {'encoder': {'embeddings': jnp.asarray(r)}})
    assert attacked - clean > random - clean
  assert attacked > clean


def test_an_adversarial_step_descends_both_losses_and_reports_the_clean_one():
  """With SGD at rate 1 the update is minus the gradient: that of loss(0) + loss(attack)."""
  batch, rng = _batch(), jax.random.key(3)
  state = _state(0.5)
  plain, plain_metrics = steps.train_step(state, batch, rng, _Task(0.0))
  adv, adv_metrics = steps.train_step(state, batch, rng, _Task(0.5))
  np.testing.assert_allclose(adv_metrics['loss'], plain_metrics['loss'], rtol=1e-6)

  task = _Task(0.5)
  zeros = steps.perturbation_zeros(state, batch, task)

  def mean_loss(params, perturbations):
    outputs, _ = steps.apply_model(state, params, batch, task, None, perturbations)
    total, weight = task.loss(outputs, batch)
    return total / weight

  clean_grads, toward = jax.grad(mean_loss, argnums=(0, 1))(state.params, zeros)
  attack = steps.adversarial_perturbation(toward, 0.5)
  adv_grads = jax.grad(mean_loss)(state.params, attack)
  want = jax.tree.map(lambda p, a, b: p - a - b, state.params, clean_grads, adv_grads)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), adv.params, want)
  moved = jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), adv.params, plain.params)
  assert max(jax.tree.leaves(moved)) > 1e-3  # the attack changed the update


def test_a_model_without_a_perturbation_point_is_an_error():
  model = models.BiLSTMRegressor(4)
  batch = {'inputs': np.zeros((2, 3, 5), np.float32), 'lengths': np.full((2,), 3, np.int32)}
  batch['targets'] = np.zeros((2, 3, 1), np.float32)
  state = steps.create_train_state(jax.random.key(0), model, optax.sgd(0.1), (batch['inputs'],))
  with pytest.raises(ValueError, match='marks no perturbation point'):
    steps.perturbation_zeros(state, batch, _Task(0.5))
