"""`CTCLabels`: a label string per sequence, learned from per-step logits with CTC.

The objective of a transcription task (`fsdd_ctc`, or one of your own): the dataset holds
`labels` int[n, max_labels], each sequence's labels first and -1 after them, and the
model outputs float[batch, time, classes] logits over the labels and a blank. No
alignment is given; CTC sums over all of them (`bilstm_jax.heads.ctc`).

On device, traceable: the CTC loss, the greedy (best-path) label error rate and the
greedy labels with their timing. On the host, at every evaluation of the dev set: the
prefix beam search's label error rate (`host_metrics`), which is no sum over batches.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.errors import DataFileError
from bilstm_jax.heads import ctc
from bilstm_jax.tasks import losses
from bilstm_jax.tasks.objectives import Objective


def greedy_emissions(logits: jax.Array, lengths: jax.Array, blank: int):
  """Best-path decoding on device, as masks (traceable; `ctc.greedy_decode` on the host).

  Args:
    logits: float[batch, time, classes]; lengths: int[batch].
    blank: the blank class.

  Returns:
    (path int32[batch, time], emit bool[batch, time], next_run int32[batch, time]): the
    argmax class per frame; True where a token is emitted (a real frame starting a run of
    a non-blank class); for each frame, the first frame of the next run (or the length).
  """
  time = logits.shape[1]
  steps = jnp.arange(time)[None, :]
  valid = steps < lengths[:, None]
  path = jnp.argmax(logits, -1).astype(jnp.int32)
  prev = jnp.pad(path[:, :-1], ((0, 0), (1, 0)), constant_values=-1)
  run_start = valid & (path != prev)
  emit = run_start & (path != blank)
  cand = jnp.where(run_start | ~valid, steps, time)
  after = jax.lax.cummin(cand, axis=1, reverse=True)
  next_run = jnp.pad(after[:, 1:], ((0, 0), (0, 1)), constant_values=time)
  return path, emit, jnp.minimum(next_run, lengths[:, None])


def edit_distances(
  emit: jax.Array, path: jax.Array, refs: jax.Array, ref_lengths: jax.Array
) -> jax.Array:
  """Levenshtein distance of each emitted token string to its reference (traceable).

  A scan over frames keeps one row of the edit-distance table per example, updated at
  the frames that emit a token, so no decoded string is materialised.

  Args:
    emit: bool[batch, time]; path: int[batch, time] (the token at emitting frames).
    refs: int[batch, max_refs] (past `ref_lengths` ignored); ref_lengths: int[batch].

  Returns:
    int32[batch]: insertions + deletions + substitutions.
  """
  batch, width = refs.shape
  row0 = jnp.broadcast_to(jnp.arange(width + 1, dtype=jnp.int32), (batch, width + 1))

  def body(row, x):
    e, h = x
    cols = [row[:, 0] + 1]
    for j in range(1, width + 1):
      sub = row[:, j - 1] + (h != refs[:, j - 1]).astype(jnp.int32)
      cols.append(jnp.minimum(jnp.minimum(row[:, j] + 1, cols[-1] + 1), sub))
    return jnp.where(e[:, None], jnp.stack(cols, 1), row), None

  row, _ = jax.lax.scan(body, row0, (emit.T, path.T))
  return jnp.take_along_axis(row, ref_lengths[:, None], 1)[:, 0]


@dataclasses.dataclass(frozen=True)
class CTCLabels(Objective):
  """A label string per sequence (`labels` int[n, max_labels], -1 after each sequence's
  labels) from per-step logits float[batch, time, classes], with CTC.

  Metrics: `loss` (CTC negative log-likelihood per sequence) and `der` (the greedy label
  error rate: edit distance over reference labels; for digits, the digit error rate) on
  device; `beam_der` (the same rate of prefix beam search) on the host (`host_metrics`).
  Predictions, greedy and in fixed-size arrays: `digits` int32[batch, max_tokens] (the
  labels, -1 after them), `num_digits` int32[batch], `start_s` and `end_s`
  float32[batch, max_tokens] (each label's time, from `step_timing`).

  Attributes:
    max_tokens: labels `predictions` holds per sequence (`num_digits` is exact beyond it).
    beam_width: prefixes the beam search of `beam_der` keeps.
    step_timing: (hop, window, rate) of one model step: a step t covers samples
      [t * hop, t * hop + window) of a signal of `rate` samples per second. The default
      (1, 1, 1) gives times in steps: the first step, and one past the last.
    blank: the blank class; None: the last class.
  """

  max_tokens: int = 16
  beam_width: int = 8
  step_timing: tuple[int, int, int] = (1, 1, 1)
  blank: int | None = None

  per_step: ClassVar[bool] = False
  host_metric_modes: ClassVar[dict[str, str]] = {'beam_der': 'min'}

  @property
  def metrics(self) -> tuple[str, ...]:
    """'loss' and 'der'."""
    return ('loss', 'der')

  @property
  def metric_modes(self) -> dict[str, str]:
    """Both 'min'."""
    return {'loss': 'min', 'der': 'min'}

  def _blank(self, num_classes: int) -> int:
    return num_classes - 1 if self.blank is None else self.blank

  def check(self, dataset, where, sizes):
    """The labels must be int[n, max_labels], each row's labels before its -1 padding,
    within the fitted classes and not the blank."""
    if 'labels' not in dataset:
      return
    labels = dataset['labels']
    if labels.ndim != 2 or labels.dtype.kind not in 'iu':
      raise DataFileError(
        f'{where}: CTC needs a label string per sequence (labels int[n, max_labels], -1 '
        f'after each one); got {labels.dtype} of shape {list(labels.shape)}.'
      )
    real = labels >= 0
    gaps = real[:, 1:] & ~real[:, :-1]
    if gaps.any():
      i = int(np.argwhere(gaps)[0][0])
      raise DataFileError(f'{where}: sequence {i} has a label after its -1 padding.')
    if 'num_classes' in sizes:
      classes, blank = sizes['num_classes'], self._blank(sizes['num_classes'])
      bad = real & ((labels >= classes) | (labels == blank))
      if bad.any():
        i = np.argwhere(bad)[0].tolist()
        raise DataFileError(
          f'{where}: label {labels[tuple(i)]} at {i} is outside [0, {classes}) or the blank '
          f'({blank}).'
        )

  def loss(self, outputs, batch):
    """CTC negative log-likelihood per sequence of logits float[batch, time, classes]
    against `labels` int32[batch, max_labels]."""
    labels = batch['labels']
    counts = (labels >= 0).sum(-1).astype(jnp.int32)
    return ctc.ctc_loss(outputs, batch['lengths'], labels, counts, blank_id=self.blank)

  def eval_sums(self, outputs, batch):
    """`loss`, and `der`: the greedy labels' edit distances over the reference labels,
    as (sum, count) pairs."""
    labels = batch['labels']
    ref_lengths = jnp.where(batch['lengths'] > 0, (labels >= 0).sum(-1), 0).astype(jnp.int32)
    blank = self._blank(outputs.shape[-1])
    path, emit, _ = greedy_emissions(outputs, batch['lengths'], blank)
    dist = edit_distances(emit, path, labels, ref_lengths)
    return {
      'loss': self.loss(outputs, batch),
      'der': (dist.sum().astype(jnp.float32), ref_lengths.sum().astype(jnp.float32)),
    }

  def host_metrics(self, dataset: dict, outputs: np.ndarray) -> dict[str, float]:
    """{'beam_der': the label error rate of prefix beam search (`beam_width`)}.

    Args:
      dataset: `labels` int32[n, max_labels] (-1 padded) and `lengths` int32[n].
      outputs: float32[n, time, classes] logits (or an ensemble's log-probabilities).
    """
    refs = [row[row >= 0].tolist() for row in dataset['labels']]
    hyps = ctc.best_labellings(outputs, dataset['lengths'], self.beam_width, self.blank)
    return {'beam_der': ctc.error_rate(hyps, refs)}

  def combine(self, member_outputs):
    """The log of the members' mean probabilities (CTC normalises them again)."""
    return losses.mean_probability_logits(member_outputs)

  def predictions(self, outputs, batch):
    """Greedy transcription with timing, in fixed-size arrays (the tail is -1).

    Returns:
      'digits' int32[batch, max_tokens], 'num_digits' int32[batch], 'start_s' and
      'end_s' float32[batch, max_tokens]: the first and last sample time covered by the
      steps each label is emitted on (CTC emits a label as a short spike inside it: the
      times place the label, they are not its boundaries).
    """
    blank = self._blank(outputs.shape[-1])
    path, emit, next_run = greedy_emissions(outputs, batch['lengths'], blank)
    batch_size, m = path.shape[0], self.max_tokens
    slot = jnp.where(emit, jnp.cumsum(emit, 1) - 1, m)
    rows = jnp.arange(batch_size)[:, None]
    hop, win, rate = self.step_timing
    rate = float(rate)
    steps = jnp.arange(path.shape[1])[None, :]
    start = (steps * hop / rate).astype(jnp.float32)
    end = (((next_run - 1) * hop + win) / rate).astype(jnp.float32)

    def put(values, fill):
      out = jnp.full((batch_size, m), fill, values.dtype)
      return out.at[rows, slot].set(values, mode='drop')

    return {
      'digits': put(path, -1),
      'num_digits': emit.sum(1).astype(jnp.int32),
      'start_s': put(jnp.broadcast_to(start, path.shape), -1.0),
      'end_s': put(end, -1.0),
    }
