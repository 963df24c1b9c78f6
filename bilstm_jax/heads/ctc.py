"""CTC: a masked loss on `optax.ctc_loss`, greedy and prefix beam decoding, token timings.

Blank is the last class (`classes - 1`) unless `blank_id` says otherwise. With that choice
the labels need no shifting: for spoken digits (11 classes) digit d is class d, and the
blank takes id 10, the id the framewise task gives to silence.

The loss runs in JAX (it is differentiated); the decoders run in numpy on the host, on
logits fetched once per batch. Decoders apply log-softmax themselves, so they take logits
or log-probabilities alike (log-softmax of log-probabilities changes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _blank(num_classes: int, blank_id: int | None) -> int:
  return num_classes - 1 if blank_id is None else blank_id


def ctc_loss(
  logits: jax.Array,
  logit_lengths: jax.Array,
  labels: jax.Array,
  label_lengths: jax.Array,
  blank_id: int | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Negative log-likelihood of each label sequence under CTC, summed over real examples.

  Args:
    logits: float32[batch, time, classes], unnormalised.
    logit_lengths: int32[batch], real frames per example; frames at or beyond it are
      ignored. Examples of length 0 (the padding of a short last batch) weigh nothing.
    labels: int32[batch, max_labels], right-padded; values past `label_lengths` are ignored.
    label_lengths: int32[batch].
    blank_id: the blank class; None means the last, `classes - 1`.

  Returns:
    (sum of per-example losses, number of examples with length > 0), both float32 scalars.
    An example whose labels cannot fit in its frames gets a loss of about 1e5 (optax's
    `log_epsilon`), not inf.
  """
  _, time, classes = logits.shape
  max_labels = labels.shape[1]
  logit_paddings = (jnp.arange(time)[None, :] >= logit_lengths[:, None]).astype(jnp.float32)
  label_paddings = jnp.arange(max_labels)[None, :] >= label_lengths[:, None]
  # Padding values are arbitrary ids (-1, say); give optax an in-range one.
  labels = jnp.where(label_paddings, 0, labels)
  per_example = optax.ctc_loss(
    logits,
    logit_paddings,
    labels,
    label_paddings.astype(jnp.float32),
    blank_id=_blank(classes, blank_id),
  )
  real = logit_lengths > 0
  return jnp.where(real, per_example, 0.0).sum(), real.sum().astype(jnp.float32)


def log_softmax(logits: np.ndarray) -> np.ndarray:
  """float[..., classes] -> float64 log-probabilities over the last axis."""
  x = np.asarray(logits, np.float64)
  x = x - x.max(axis=-1, keepdims=True)
  return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def token_spans(path: np.ndarray, blank_id: int) -> tuple[np.ndarray, np.ndarray]:
  """Collapses a frame path into tokens, each with the frames it was emitted on.

  Repeats merge, blanks drop: path [1, 1, B, 1, 3, 3] gives tokens [1, 1, 3] with spans
  [[0, 2], [3, 4], [4, 6]].

  Args:
    path: int[frames], one class per frame.
    blank_id: the blank class.

  Returns:
    (int32[tokens], int32[tokens, 2]): the tokens and each one's [start, end) frames.
  """
  path = np.asarray(path)
  if path.size == 0:
    return np.zeros(0, np.int32), np.zeros((0, 2), np.int32)
  starts = np.flatnonzero(np.concatenate([[True], path[1:] != path[:-1]]))
  ends = np.append(starts[1:], len(path))
  keep = path[starts] != blank_id
  spans = np.stack([starts[keep], ends[keep]], axis=1).astype(np.int32)
  return path[starts[keep]].astype(np.int32), spans


def greedy_decode(
  logits: np.ndarray, lengths: np.ndarray, blank_id: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
  """Best-path decoding: the most likely class per frame, collapsed by `token_spans`.

  Args:
    logits: float[batch, time, classes] (numpy or JAX; fetched to the host).
    lengths: int[batch], real frames per example.
    blank_id: None means the last class.

  Returns:
    per example, (int32[tokens], int32[tokens, 2]): the labels and their [start, end)
    frames.
  """
  logits = np.asarray(logits)
  blank = _blank(logits.shape[-1], blank_id)
  paths = logits.argmax(axis=-1)
  return [token_spans(p[:n], blank) for p, n in zip(paths, np.asarray(lengths), strict=True)]


def prefix_beam_search(
  logits: np.ndarray, beam_width: int = 8, blank_id: int | None = None
) -> list[tuple[tuple[int, ...], float]]:
  """CTC prefix beam search over one sequence, in log space.

  Each prefix keeps two probabilities: of the paths that produce it and end in a blank,
  and of those that end in its last label. They differ in what a repeated label does
  next: after a blank it starts a new token, otherwise it merges into the last one. A
  labelling's probability sums over its many paths, so the best labelling can beat the
  labelling of the best single path (greedy decoding). After each frame the `beam_width`
  most probable prefixes are kept; a beam as wide as the number of labellings is exact.

  Args:
    logits: float[time, classes], the real frames only.
    beam_width: prefixes kept per frame.
    blank_id: None means the last class.

  Returns:
    up to `beam_width` (labels, log-probability) pairs, most probable first.
  """
  logp = log_softmax(logits)
  blank = _blank(logp.shape[-1], blank_id)
  neg_inf = -np.inf
  beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, neg_inf)}
  for frame in logp:
    nxt: dict[tuple[int, ...], list[float]] = {}

    def add(prefix, ends_blank, value, nxt=nxt):
      entry = nxt.setdefault(prefix, [neg_inf, neg_inf])
      entry[0 if ends_blank else 1] = np.logaddexp(entry[0 if ends_blank else 1], value)

    for prefix, (p_blank, p_label) in beams.items():
      total = np.logaddexp(p_blank, p_label)
      add(prefix, True, total + frame[blank])
      for c, lp in enumerate(frame):
        if c == blank:
          continue
        if prefix and prefix[-1] == c:
          add(prefix + (c,), False, p_blank + lp)  # a blank separates the two tokens
          add(prefix, False, p_label + lp)  # the same token goes on
        else:
          add(prefix + (c,), False, total + lp)
    ranked = sorted(nxt.items(), key=lambda kv: -np.logaddexp(*kv[1]))
    beams = {p: (v[0], v[1]) for p, v in ranked[:beam_width]}
  return [(p, float(np.logaddexp(*v))) for p, v in beams.items()]


_HASH = np.uint64(0x9E3779B97F4A7C15)  # odd: prefix -> prefix + (c,) mixes every bit


def best_labellings(
  logits: np.ndarray, lengths: np.ndarray, beam_width: int = 8, blank_id: int | None = None
) -> list[tuple[int, ...]]:
  """`prefix_beam_search`'s best labelling of every sequence, searched all at once.

  The same search, vectorised over sequences, prefixes and classes with numpy: one loop
  over time instead of Python loops over prefixes and classes. A prefix is known by a
  64-bit hash (an extension that equals a kept prefix merges into it, as in the
  reference) and rebuilt at the end from per-frame back-pointers. Equal scores may rank
  differently from the reference; nothing else differs.

  Args:
    logits: float[batch, time, classes] (or log-probabilities).
    lengths: int[batch], real frames per example.
    beam_width: prefixes kept per frame.
    blank_id: None means the last class.

  Returns:
    per example, the most probable labelling as a tuple of class ids.
  """
  lengths = np.asarray(lengths)
  # Longest first: at frame t only the first `live` sequences still run.
  order = np.argsort(-lengths, kind='stable')
  logp, lengths = log_softmax(logits)[order], lengths[order]
  n, _, classes = logp.shape
  time = int(lengths.max(initial=0))
  blank, k = _blank(classes, blank_id), beam_width
  slots, labels = np.arange(k), np.arange(classes)
  p_blank = np.where(slots == 0, 0.0, -np.inf)[None].repeat(n, 0)  # only () is alive
  p_label = np.full((n, k), -np.inf)
  last = np.full((n, k), -1)
  key = np.zeros((n, k), np.uint64)
  src = np.broadcast_to(slots, (time, n, k)).copy()
  token = np.full((time, n, k), -1, np.int64)
  for t in range(time):
    m = int((lengths > t).sum())
    rows = np.arange(m)[:, None]
    frame, pb, pl, lst, ky = logp[:m, t], p_blank[:m], p_label[:m], last[:m], key[:m]
    total = np.logaddexp(pb, pl)
    stay_blank = total + frame[:, blank, None]
    last_lp = np.take_along_axis(frame, np.maximum(lst, 0), 1)
    stay_label = np.where(lst >= 0, pl + last_lp, -np.inf)
    # prefix + (c,): after a blank only, when c repeats the last label.
    same = lst[:, :, None] == labels
    ext = np.where(same, pb[:, :, None], total[:, :, None]) + frame[:, None, :]
    ext[:, :, blank] = -np.inf
    ext_key = ky[:, :, None] * _HASH + (labels + 1).astype(np.uint64)
    # An extension that is already a kept prefix adds into that prefix (at most one does).
    match = (ext_key[..., None] == ky[:, None, None, :]) & np.isfinite(total)[:, None, None, :]
    merged = np.where(match, ext[..., None], -np.inf).max(axis=(1, 2))
    stay_label = np.logaddexp(stay_label, merged)
    ext = np.where(match.any(-1), -np.inf, ext)
    scores = np.concatenate([np.logaddexp(stay_blank, stay_label), ext.reshape(m, -1)], 1)
    top = np.argsort(-scores, axis=1, kind='stable')[:, :k]
    stays = top < k
    parent = np.where(stays, top, (top - k) // classes)
    c = np.where(stays, -1, (top - k) % classes)
    c0 = np.maximum(c, 0)
    p_blank[:m] = np.where(stays, stay_blank[rows, parent], -np.inf)
    p_label[:m] = np.where(stays, stay_label[rows, parent], ext[rows, parent, c0])
    last[:m] = np.where(stays, lst[rows, parent], c)
    key[:m] = np.where(stays, ky[rows, parent], ext_key[rows, parent, c0])
    src[t, :m], token[t, :m] = parent, c
  slot = np.logaddexp(p_blank, p_label).argmax(1)
  out = np.full((time, n), -1, np.int64)
  for t in range(time - 1, -1, -1):
    out[t] = token[t, np.arange(n), slot]
    slot = src[t, np.arange(n), slot]
  best = [tuple(int(c) for c in col[col >= 0]) for col in out.T]
  result = [()] * n
  for i, b in zip(order, best, strict=True):
    result[i] = b
  return result


def levenshtein(a, b) -> int:
  """Edit distance between two sequences: insertions + deletions + substitutions."""
  row = list(range(len(b) + 1))
  for i, x in enumerate(a, 1):
    prev, row[0] = row[0], i
    for j, y in enumerate(b, 1):
      prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
  return row[-1]


def error_rate(hypotheses, references) -> float:
  """Total edit distance over total reference length (e.g. the digit error rate)."""
  pairs = list(zip(hypotheses, references, strict=True))
  total = sum(len(r) for _, r in pairs)
  return sum(levenshtein(list(h), list(r)) for h, r in pairs) / max(total, 1)


def beam_decode(
  logits: np.ndarray, lengths: np.ndarray, beam_width: int = 8, blank_id: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
  """Prefix beam search per example (`best_labellings`), with token spans from
  `forced_align`.

  Args:
    logits: float[batch, time, classes].
    lengths: int[batch], real frames per example.

  Returns:
    per example, (int32[tokens], int32[tokens, 2]) as `greedy_decode` returns them, the
    spans taken from the best alignment of the best labelling.
  """
  logits = np.asarray(logits)
  blank = _blank(logits.shape[-1], blank_id)
  lengths = np.asarray(lengths)
  best = best_labellings(logits, lengths, beam_width, blank)
  return [
    token_spans(forced_align(x[:n], b, blank), blank)
    for x, n, b in zip(logits, lengths, best, strict=True)
  ]


def forced_align(
  logits: np.ndarray, labels: Sequence[int], blank_id: int | None = None
) -> np.ndarray:
  """The most probable CTC path (Viterbi) that produces `labels`.

  Args:
    logits: float[time, classes].
    labels: the label sequence, no blanks.
    blank_id: None means the last class.

  Returns:
    int32[time]: a class per frame; `token_spans(path, blank)` collapses it to `labels`.

  Raises:
    ValueError: if the labels cannot fit in `time` frames (repeats need a blank between).
  """
  logp = log_softmax(logits)
  time = len(logp)
  blank = _blank(logp.shape[-1], blank_id)
  if time == 0 and not len(labels):
    return np.zeros(0, np.int32)
  ext = np.full(2 * len(labels) + 1, blank)
  ext[1::2] = labels  # blank, l1, blank, l2, ..., blank
  states = len(ext)
  # A label state may be entered from two back when that skips a blank between
  # different labels.
  skip = np.zeros(states, bool)
  skip[2:] = (ext[2:] != blank) & (ext[2:] != ext[:-2])
  score = np.full(states, -np.inf)
  if time:
    score[0] = logp[0, blank]
    if states > 1:
      score[1] = logp[0, ext[1]]
  back = np.zeros((time, states), np.int64)
  for t in range(1, time):
    cand = np.full((3, states), -np.inf)  # stay, step from s - 1, jump from s - 2
    cand[0] = score
    cand[1, 1:] = score[:-1]
    cand[2, 2:] = np.where(skip[2:], score[:-2], -np.inf)
    choice = cand.argmax(axis=0)
    back[t] = np.arange(states) - choice
    score = cand.max(axis=0) + logp[t, ext]
  finals = [states - 1] + ([states - 2] if states > 1 else [])
  end = max(finals, key=lambda s: score[s])
  if time == 0 or not np.isfinite(score[end]):
    raise ValueError(f'{len(labels)} labels {list(labels)} cannot fit in {time} frames.')
  path = np.zeros(time, np.int32)
  s = end
  for t in range(time - 1, -1, -1):
    path[t] = ext[s]
    s = back[t, s]
  return path
