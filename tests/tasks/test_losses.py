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
    logits = self.logits[:, :2].reshape(6, 4)[:4]
    best = np.argmax(np.asarray(logits), -1)
    # Examples 0 (length 1) and 1 are right, 2 wrong, 3 right but padding.
    labels = jnp.array([best[0], best[1], (best[2] + 1) % 4, best[3]], jnp.int32)
    lengths = jnp.array([1, 3, 2, 0], jnp.int32)
    total, count = self.variant(losses.sequence_cross_entropy)(logits, labels, lengths)
    logp = np.asarray(jax.nn.log_softmax(logits))
    want = -sum(logp[b, int(labels[b])] for b in range(3))
    np.testing.assert_allclose(float(total), want, rtol=1e-5)
    hits, n = self.variant(losses.sequence_accuracy)(logits, labels, lengths)
    assert (float(hits), float(n), float(count)) == (2.0, 3.0, 3.0)
    for value in (total, count, hits, n):
      assert value.dtype == jnp.float32

  @chex.variants(with_jit=True, without_jit=True)
  def test_masked_mse_and_mae_count_real_terms(self):
    preds = self.logits[..., :2]
    targets = jnp.asarray(np.random.default_rng(1).normal(size=preds.shape), jnp.float32)
    sq, n = self.variant(losses.masked_mse)(preds, targets, self.lengths)
    ab, m = self.variant(losses.masked_abs_error)(preds, targets, self.lengths)
    e = np.asarray(preds, np.float64) - np.asarray(targets, np.float64)
    np.testing.assert_allclose(float(sq), (e[0] ** 2).sum() + (e[1, :2] ** 2).sum(), rtol=1e-5)
    np.testing.assert_allclose(float(ab), np.abs(e[0]).sum() + np.abs(e[1, :2]).sum(), rtol=1e-5)
    assert float(n) == float(m) == 14.0
    assert n.dtype == m.dtype == jnp.float32

  def test_step_sums_are_float32(self):
    for fn in (losses.step_cross_entropy, losses.step_accuracy):
      for value in fn(self.logits, self.labels, self.lengths):
        assert value.dtype == jnp.float32, fn.__name__

  def test_cross_entropy_of_bfloat16_logits_is_computed_in_float32(self):
    """bfloat16 logits are upcast first: the loss equals float32's on the same values (a
    bfloat16 log-softmax would be off by about 1e-2)."""
    half = self.logits.astype(jnp.bfloat16)
    up = half.astype(jnp.float32)
    np.testing.assert_allclose(
      losses.step_cross_entropy(half, self.labels, self.lengths)[0],
      losses.step_cross_entropy(up, self.labels, self.lengths)[0],
      rtol=1e-6,
    )
    args = (self.labels[:, 0], self.lengths)
    np.testing.assert_allclose(
      losses.sequence_cross_entropy(half[:, 0], *args)[0],
      losses.sequence_cross_entropy(up[:, 0], *args)[0],
      rtol=1e-6,
    )

  def test_mean_probability_logits_average_the_members_probabilities(self):
    members = np.random.default_rng(2).normal(size=(3, 2, 5, 4)) * 3
    got = losses.mean_probability_logits(jnp.asarray(members, jnp.float32))
    probs = np.exp(members - members.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    assert got.shape == (2, 5, 4) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, np.log(probs.mean(0)), rtol=1e-5, atol=1e-5)
    # A probability that underflows float32 is floored at 1e-30: finite logits, not -inf.
    far = losses.mean_probability_logits(jnp.array([[0.0, -300.0], [0.0, -300.0]]))
    np.testing.assert_allclose(far, [0.0, np.log(1e-30)], rtol=1e-6, atol=1e-6)
