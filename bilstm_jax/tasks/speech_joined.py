"""Speech tasks on joined utterances: 2-7 FSDD digits of one speaker, with silences.

  fsdd_ctc     -> the digit string: per-frame logits over 10 digits + blank, CTC loss,
               greedy digit error rate on device and the prefix beam search's on the
               host at every evaluation (`DigitCTCTask`); transcripts with timings in
               `bilstm_jax.tasks.speech_decode`;
  fsdd_frames  -> a label per frame, digit or silence (`DigitFramesTask`: joined
               utterances + `StepLabels`): the 2005 framewise BLSTM set-up.

Sources, features and their saved statistics are those of `bilstm_jax.tasks.speech`. The
dev set (and a test folder's) is built with the fixed seed `fsdd.DEV_SEED` from the
split's recordings, so every run scores the same utterances; the training utterances
come from `data_seed`. Augmentation is redrawn every epoch from the clean utterances
(`JoinedData.epoch_transform`), their frame labels moved with the time shift.
"""

from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.data import audio, fsdd, wav
from bilstm_jax.data.frames import pad_features, pad_like, stack_labels
from bilstm_jax.errors import DataFileError
from bilstm_jax.heads import ctc
from bilstm_jax.models import BiLSTMTagger
from bilstm_jax.tasks import base, losses, speech_output
from bilstm_jax.tasks.objectives import StepLabels
from bilstm_jax.tasks.speech import BLANK, SpeechData


@dataclasses.dataclass(frozen=True)
class JoinedData(SpeechData):
  """Joined utterances (`fsdd.joined_set`) built from a source's recordings.

  Attributes:
    num_train: training utterances (drawn from `data_seed`).
    num_dev: dev (and test-folder) utterances (drawn from `fsdd.DEV_SEED`).
    num_digits: (fewest, most) digits per utterance.
    silence_ms: (shortest, longest) silence before, between and after the digits.
  """

  num_train: int = 4000
  num_dev: int = 500
  num_digits: tuple = (2, 7)
  silence_ms: tuple = (50.0, 300.0)

  @classmethod
  def speech_fields(cls, config) -> dict:
    d = config.data
    return {
      **super().speech_fields(config),
      'num_train': int(d.get('num_train') or 4000),
      'num_dev': int(d.get('num_dev') or 500),
      'num_digits': (int(d.get('min_digits', 2)), int(d.get('max_digits', 7))),
    }

  def utterances(self, source: str) -> list[fsdd.Joined]:
    """The joined utterances of a source (seeded as the module docstring says)."""
    recs = self.recordings(source, labelled=True)
    fc = self.feature_config
    waves = [wav.read_wav(r.path, fc.sample_rate, fc.resample) for r in recs]
    pool = fsdd.make_pool(recs, waves)
    num = self.num_train if source == 'train' else self.num_dev
    # Distinct from DEV_SEED, so training never redraws the dev set's choices.
    seed = self.data_seed + 1 if source == 'train' else fsdd.DEV_SEED
    kwargs = {'num_digits': tuple(self.num_digits), 'silence_ms': tuple(self.silence_ms)}
    return fsdd.joined_set(pool, num, seed=seed, **kwargs)

  def joined_features(self, utts):
    """(raw features, frame labels, digits) of each clean utterance."""
    fc = self.feature_config
    feats = [audio.compute_features(u.waveform, fc) for u in utts]
    frames = [fsdd.frame_labels(u.segments, u.digits, len(u.waveform), fc) for u in utts]
    return feats, frames, [u.digits for u in utts]

  def train_stats(self, source: str = 'train') -> dict:
    """The statistics of the clean features of `source`'s joined utterances."""
    feats, _, _ = _joined(self, source)
    stats = audio.FeatureStats.fit(list(feats))
    return {'mean': list(stats.mean), 'std': list(stats.std)}

  def read(self, source: str, labelled: bool = True) -> dict:
    if not labelled and source not in ('train', 'dev'):  # plain wavs, one utterance each
      recs = self.recordings(source, labelled=False)
      feats = self.normalised(self.raw_features(recs), self.stats_if_needed())
      inputs, lengths = pad_features(feats, self.sizes_dims)
      return {'inputs': inputs, 'lengths': lengths}
    stats = self.stats_if_needed()
    feats, frames, digits = _joined(self, source)
    feats = self.normalised(list(feats), stats)
    frames = [stack_labels(fr, self.frame_stack) for fr in frames]
    inputs, lengths = pad_features(feats, self.sizes_dims)
    dataset = {'inputs': inputs, 'lengths': lengths}
    if labelled:
      dataset['labels'] = self.labels(frames, digits, inputs)
    self.check(dataset, source)
    return dataset

  def labels(self, frames, digits, inputs) -> np.ndarray:
    raise NotImplementedError

  def epoch_transform(self, train_set: dict, seed: int, epoch: int) -> dict:
    """The training utterances augmented afresh (`epoch_features`), drawn from (seed,
    epoch, index), their frame labels moved with the shift; the set itself when
    `augment` does nothing. Shifts shorter than the edge silences keep every digit whole."""
    if not self.augmenting:
      return train_set
    utts = _cached(self, 'train')[0]
    waves = [u.waveform for u in utts]
    feats, shifts = self.epoch_features(waves, seed, epoch, self.stats_if_needed())
    fc, frames = self.feature_config, []
    for u, shift in zip(utts, shifts, strict=True):
      segments = fsdd.shift_segments(u.segments, shift, len(u.waveform))
      labels = fsdd.frame_labels(segments, u.digits, len(u.waveform), fc)
      frames.append(stack_labels(labels, self.frame_stack))
    inputs = pad_like(feats, train_set)
    labels = self.labels(frames, [u.digits for u in utts], inputs)
    return {**train_set, 'inputs': inputs, 'labels': labels}

  def example_files(self, source) -> list[str] | None:
    """Unlabelled wavs are one utterance each; 'train' and 'dev' join recordings."""
    return None if source in ('train', 'dev') else super().example_files(source)


def _joined_key(task: JoinedData) -> tuple:
  return (
    task.folder,
    task.test_speaker,
    tuple(sorted(task.features.items())),
    task.data_seed,
    task.num_train,
    task.num_dev,
    tuple(task.num_digits),
    tuple(task.silence_ms),
  )


_JOINED: dict = {}


def _cached(task: JoinedData, source: str):
  # The same utterances are read for stats, fit, check, the run itself and every epoch's
  # augmentation; building them (waveforms, features, labels) is the slow part, so keep
  # the last few sets: (utterances, raw features, frame labels, digits).
  key = (_joined_key(task), os.path.abspath(source) if os.path.exists(source) else source)
  if key not in _JOINED:
    if len(_JOINED) >= 4:
      _JOINED.pop(next(iter(_JOINED)))
    utts = task.utterances(source)
    _JOINED[key] = (utts, *task.joined_features(utts))
  return _JOINED[key]


def _joined(task: JoinedData, source: str):
  """(raw features, frame labels, digits) of a source's clean joined utterances."""
  return _cached(task, source)[1:]


@dataclasses.dataclass(frozen=True)
class DigitFramesTask(JoinedData):
  """Framewise labelling of joined utterances: digit 0-9 or silence (10) per frame.

  Dataset: `inputs` float32[n, frames, dims], `lengths`, `labels` int32[n, frames].
  """

  name: ClassVar[str] = 'fsdd_frames'
  num_classes: ClassVar[int] = fsdd.NUM_DIGITS + 1  # the digits and silence
  objective: ClassVar[StepLabels] = StepLabels()
  records = speech_output.frame_records  # digit runs with times, and every step's label

  @classmethod
  def from_config(cls, config):
    return cls(**cls.speech_fields(config))

  def make_model(self):
    """A `BiLSTMTagger` over the 10 digits and silence."""
    return BiLSTMTagger.from_config(self.model, num_classes=self.sizes['num_classes'])

  def labels(self, frames, digits, inputs):
    out = np.full(inputs.shape[:2], fsdd.SILENCE, np.int32)
    for i, fr in enumerate(frames):
      out[i, : len(fr)] = fr
    return out


# ------------------------------------------------------------------------------ CTC


def greedy_emissions(logits: jax.Array, lengths: jax.Array, blank: int = BLANK):
  """Best-path decoding on device, as masks (traceable; `ctc.greedy_decode` on the host).

  Args:
    logits: float[batch, time, classes]; lengths: int[batch].

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
class DigitCTCTask(JoinedData):
  """Digit-string transcription of joined utterances: BiLSTM + CTC over 10 digits + blank.

  Dataset: `inputs` float32[n, frames, dims], `lengths`, `labels` int32[n, max_digits]
  (-1 past each utterance's digits). Metrics: `loss` (CTC negative log-likelihood per
  utterance) and `der` (greedy digit error rate: edit distance over reference digits) on
  device; `beam_der` (the same rate of prefix beam search) on the host (`host_metrics`).

  Attributes:
    max_tokens: digits `predictions` holds per utterance (the count is exact beyond it).
    beam_width: prefixes the beam search of `beam_der` keeps.
  """

  name: ClassVar[str] = 'fsdd_ctc'
  num_classes: ClassVar[int] = fsdd.NUM_DIGITS + 1  # the digits and the blank
  metrics: ClassVar[tuple[str, ...]] = ('loss', 'der')
  metric_modes: ClassVar[dict] = {'loss': 'min', 'der': 'min'}
  per_step: ClassVar[bool] = False
  host_metric_modes: ClassVar[dict] = {'beam_der': 'min'}

  max_tokens: int = 16
  beam_width: int = 8
  records = speech_output.transcript_records  # {'file', 'transcript', 'digits': [...]}

  @classmethod
  def from_config(cls, config):
    return cls(beam_width=int(config.data.get('beam_width', 8)), **cls.speech_fields(config))

  @property
  def time_keys(self) -> tuple[str, ...]:
    return ('inputs',)  # labels are digit strings, not frames

  def labels(self, frames, digits, inputs):
    out = np.full((len(digits), self.num_digits[1]), -1, np.int32)
    for i, d in enumerate(digits):
      if len(d) > out.shape[1]:
        raise DataFileError(f'utterance {i} has {len(d)} digits; at most {out.shape[1]}.')
      out[i, : len(d)] = d
    return out

  def check(self, dataset: dict, where: str) -> None:
    base.Task.check(self, dataset, where)

  def make_model(self):
    return BiLSTMTagger.from_config(self.model, num_classes=self.sizes['num_classes'])

  def _ctc(self, outputs, batch):
    labels = batch['labels']
    return ctc.ctc_loss(outputs, batch['lengths'], labels, (labels >= 0).sum(-1).astype(jnp.int32))

  def loss(self, outputs, batch):
    return self._ctc(outputs, batch)

  def eval_sums(self, outputs, batch):
    labels = batch['labels']
    ref_lengths = jnp.where(batch['lengths'] > 0, (labels >= 0).sum(-1), 0).astype(jnp.int32)
    path, emit, _ = greedy_emissions(outputs, batch['lengths'])
    dist = edit_distances(emit, path, labels, ref_lengths)
    return {
      'loss': self._ctc(outputs, batch),
      'der': (dist.sum().astype(jnp.float32), ref_lengths.sum().astype(jnp.float32)),
    }

  def host_metrics(self, dataset: dict, outputs: np.ndarray) -> dict[str, float]:
    """{'beam_der': the digit error rate of prefix beam search (`beam_width`)}.

    Args:
      dataset: `labels` int32[n, max_digits] (-1 padded) and `lengths` int32[n].
      outputs: float32[n, time, 11] logits (or an ensemble's log-probabilities).
    """
    refs = [row[row >= 0].tolist() for row in dataset['labels']]
    hyps = ctc.best_labellings(outputs, dataset['lengths'], self.beam_width, BLANK)
    return {'beam_der': ctc.error_rate(hyps, refs)}

  def combine(self, member_outputs):
    return losses.mean_probability_logits(member_outputs)

  def predictions(self, outputs, batch):
    """Greedy transcription with timing, in fixed-size arrays (the tail is -1).

    Returns:
      'digits' int32[batch, max_tokens], 'num_digits' int32[batch], 'start_s' and
      'end_s' float32[batch, max_tokens]: the first and last sample time covered by the
      frames each digit is emitted on (CTC emits a digit as a short spike inside it: the
      times place the digit, they are not its boundaries; see DigitFramesTask).
    """
    path, emit, next_run = greedy_emissions(outputs, batch['lengths'])
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

  def final_line(self, train, dev, extra):
    return (
      f'Final CTC loss train {train["loss"]:.4f} dev {dev["loss"]:.4f};  digit error rate '
      f'(greedy) train {100 * train["der"]:.2f}% dev {100 * dev["der"]:.2f}%'
    )
