"""bilstm_jax.heads.ctc: the loss against optax and a brute-force sum, decoders, alignments."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bilstm_jax.heads import ctc

# One compiled program per shape: eager calls would compile each primitive separately.
ctc_loss = jax.jit(ctc.ctc_loss, static_argnames='blank_id')


def collapse(path, blank):
  out = []
  prev = None
  for c in path:
    if c != prev and c != blank:
      out.append(int(c))
    prev = c
  return tuple(out)


def brute_force_probs(logits: np.ndarray, blank: int) -> dict[tuple[int, ...], float]:
  """Every labelling's probability: a sum over all classes**time paths (tiny inputs only)."""
  probs = np.exp(ctc.log_softmax(logits))
  time, classes = probs.shape
  out: dict[tuple[int, ...], float] = {}
  for path in itertools.product(range(classes), repeat=time):
    p = float(np.prod(probs[np.arange(time), path]))
    key = collapse(path, blank)
    out[key] = out.get(key, 0.0) + p
  return out


# Batch of 3, time 5, classes 3 (blank = 2): lengths 5, 3 and 0 (a padding example).
LENGTHS = np.array([5, 3, 0], np.int32)
LABELS = np.array([[0, 0], [1, -1], [-1, -1]], np.int32)  # -1: padding
LABEL_LENGTHS = np.array([2, 1, 0], np.int32)


def logits_batch(seed=0):
  return np.random.default_rng(seed).normal(size=(3, 5, 3)).astype(np.float32)


def test_loss_is_optax_on_the_real_examples():
  logits = logits_batch()
  total, count = ctc_loss(jnp.asarray(logits), LENGTHS, LABELS, LABEL_LENGTHS)
  pad_t = (np.arange(5)[None] >= LENGTHS[:, None]).astype(np.float32)
  pad_l = (np.arange(2)[None] >= LABEL_LENGTHS[:, None]).astype(np.float32)
  want = optax.ctc_loss(logits, pad_t, np.maximum(LABELS, 0), pad_l, blank_id=2)
  assert float(count) == 2.0
  np.testing.assert_allclose(float(total), float(want[:2].sum()), rtol=1e-6)


def test_loss_is_minus_log_of_the_sum_over_alignments():
  logits = logits_batch(1)
  total, _ = ctc_loss(jnp.asarray(logits), LENGTHS, LABELS, LABEL_LENGTHS)
  want = 0.0
  for b in range(2):
    probs = brute_force_probs(logits[b, : LENGTHS[b]], blank=2)
    want -= np.log(probs[tuple(LABELS[b, : LABEL_LENGTHS[b]])])
  np.testing.assert_allclose(float(total), want, rtol=1e-5)


def test_padding_frames_labels_and_examples_change_nothing():
  logits = logits_batch(2)
  base = ctc_loss(jnp.asarray(logits), LENGTHS, LABELS, LABEL_LENGTHS)
  noisy = logits.copy()
  noisy[1, 3:] = 50.0
  noisy[2] = -50.0
  labels = LABELS.copy()
  labels[1, 1] = 0
  labels[2] = [1, 0]
  got = ctc_loss(jnp.asarray(noisy), LENGTHS, labels, LABEL_LENGTHS)
  np.testing.assert_allclose(np.array(got), np.array(base), rtol=1e-6)


def test_gradient_is_finite_and_zero_on_padding():
  def loss(x):
    total, count = ctc_loss(x, LENGTHS, LABELS, LABEL_LENGTHS)
    return total / count

  grad = np.asarray(jax.grad(loss)(jnp.asarray(logits_batch(3))))
  assert np.isfinite(grad).all()
  assert not grad[1, 3:].any() and not grad[2].any()
  assert np.abs(grad[0]).min() > 0


def test_an_explicit_blank_id_is_the_same_loss_with_classes_reordered():
  logits = logits_batch(4)
  moved = logits[..., [2, 0, 1]]  # blank first, labels 0, 1 become 1, 2
  a = ctc_loss(jnp.asarray(logits), LENGTHS, LABELS, LABEL_LENGTHS)
  b = ctc_loss(jnp.asarray(moved), LENGTHS, LABELS + 1, LABEL_LENGTHS, blank_id=0)
  np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-6)


def test_token_spans_collapse_repeats_and_drop_blanks():
  labels, spans = ctc.token_spans(np.array([1, 1, 9, 1, 3, 3, 9]), blank_id=9)
  np.testing.assert_array_equal(labels, [1, 1, 3])
  np.testing.assert_array_equal(spans, [[0, 2], [3, 4], [4, 6]])
  labels, spans = ctc.token_spans(np.array([9, 9]), blank_id=9)
  assert labels.shape == (0,) and spans.shape == (0, 2)


def test_greedy_decoding_of_hand_made_posteriors():
  # Classes: 0, 1, blank=2. Path 0 0 B 0 1 | padding (argmax 1, ignored).
  p = np.full((1, 7, 3), 0.1)
  for t, c in enumerate([0, 0, 2, 0, 1, 1, 1]):
    p[0, t, c] = 0.8
  [(labels, spans)] = ctc.greedy_decode(np.log(p), np.array([5]))
  np.testing.assert_array_equal(labels, [0, 0, 1])
  np.testing.assert_array_equal(spans, [[0, 2], [3, 4], [4, 5]])


def test_beam_search_finds_a_labelling_greedy_misses():
  # Blank is the likeliest class in both frames (0.6), so the best path is B B -> ''
  # (p = 0.36). But 'a' has three paths, a a, a B, B a: p = 0.16 + 0.24 + 0.24 = 0.64.
  logp = np.log(np.array([[0.4, 0.6], [0.4, 0.6]]))
  [(greedy, _)] = ctc.greedy_decode(logp[None], np.array([2]))
  assert greedy.tolist() == []
  beams = ctc.prefix_beam_search(logp, beam_width=4)
  assert beams[0][0] == (0,)
  np.testing.assert_allclose(np.exp(beams[0][1]), 0.64)
  np.testing.assert_allclose(np.exp(beams[1][1]), 0.36)
  [(labels, spans)] = ctc.beam_decode(logp[None], np.array([2]), beam_width=4)
  assert labels.tolist() == [0] and spans.shape == (1, 2)


@pytest.mark.parametrize('seed', range(4))
def test_a_wide_beam_gives_the_brute_force_probabilities(seed):
  logits = np.random.default_rng(seed).normal(size=(5, 3)) * 2
  truth = brute_force_probs(logits, blank=2)
  beams = ctc.prefix_beam_search(logits, beam_width=len(truth))
  assert len(beams) == len(truth)
  for labels, logp in beams:
    np.testing.assert_allclose(np.exp(logp), truth[labels], rtol=1e-9)
  assert beams[0][0] == max(truth, key=truth.get)


@pytest.mark.parametrize('seed', range(3))
def test_forced_alignment_is_the_best_path_for_its_labels(seed):
  logits = np.random.default_rng(seed).normal(size=(5, 3)) * 2
  logp = ctc.log_softmax(logits)
  for labels in [(), (0,), (1, 1), (0, 1, 0)]:
    path = ctc.forced_align(logits, labels)
    assert collapse(path, 2) == labels
    best = max(
      logp[np.arange(5), p].sum()
      for p in itertools.product(range(3), repeat=5)
      if collapse(p, 2) == labels
    )
    np.testing.assert_allclose(logp[np.arange(5), path].sum(), best)


def test_forced_alignment_of_labels_that_cannot_fit_is_an_error():
  with pytest.raises(ValueError, match='cannot fit in 3 frames'):
    ctc.forced_align(np.zeros((3, 3)), (0, 0, 1))  # needs 4: 0 B 0 1
