"""Losses and metrics as (sum, count) pairs: padding never counts, jit or not."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import parameterized

from bilstm_jax.tasks import losses


class LossesTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.logits = jnp.asarray(rng.normal(size=(3, 5, 4)), jnp.float32)
    self.labels = jnp.asarray(rng.integers(0, 4, (3, 5)), jnp.int32)
    self.lengths = jnp.array([5, 2, 0], jnp.int32)

  @chex.variants(with_jit=True, without_jit=True)
  def test_step_cross_entropy_and_accuracy_ignore_padding(self):
    ce = self.variant(losses.step_cross_entropy)
    acc = self.variant(losses.step_accuracy)
    total, count = ce(self.logits, self.labels, self.lengths)
    # Garbage past each length changes nothing.
    noisy = self.logits.at[1, 2:].set(1e3).at[2].set(-1e3)
    chex.assert_trees_all_close(ce(noisy, self.labels, self.lengths), (total, count), rtol=1e-6)
    logp = jax.nn.log_softmax(self.logits)
    expect = -sum(
      float(logp[b, t, self.labels[b, t]]) for b, n in ((0, 5), (1, 2)) for t in range(n)
    )
    np.testing.assert_allclose(float(total), expect, rtol=1e-5)
    assert float(count) == 7.0
    hits, n = acc(self.logits, self.labels, self.lengths)
    pred = np.argmax(np.asarray(self.logits), -1)
    want = sum(int(pred[b, t] == self.labels[b, t]) for b, k in ((0, 5), (1, 2)) for t in range(k))
    assert float(hits) == want and float(n) == 7.0

  @chex.variants(with_jit=True, without_jit=True)
  def test_sequence_losses_skip_padding_examples(self):
    logits = self.logits[:, 0]
    labels = self.labels[:, 0]
    total, count = self.variant(losses.sequence_cross_entropy)(logits, labels, self.lengths)
    logp = jax.nn.log_softmax(logits)
    np.testing.assert_allclose(
      float(total), -float(logp[0, labels[0]] + logp[1, labels[1]]), rtol=1e-5
    )
    assert float(count) == 2.0
    hits, n = self.variant(losses.sequence_accuracy)(logits, labels, self.lengths)
    assert float(n) == 2.0 and 0 <= float(hits) <= 2

  @chex.variants(with_jit=True, without_jit=True)
  def test_masked_mse_and_mae_count_real_terms(self):
    preds = self.logits[..., :2]
    targets = jnp.zeros_like(preds)
    sq, n = self.variant(losses.masked_mse)(preds, targets, self.lengths)
    ab, m = self.variant(losses.masked_abs_error)(preds, targets, self.lengths)
    p = np.asarray(preds)
    np.testing.assert_allclose(float(sq), (p[0] ** 2).sum() + (p[1, :2] ** 2).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(ab), np.abs(p[0]).sum() + np.abs(p[1, :2]).sum(), rtol=1e-5)
    assert float(n) == float(m) == 14.0
