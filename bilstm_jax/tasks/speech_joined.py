"""Speech tasks on joined utterances: 2-7 FSDD digits of one speaker, with silences.

  fsdd_ctc     -> the digit string: per-frame logits over 10 digits + blank
               (`DigitCTCTask`: joined utterances + `CTCLabels`: CTC loss, greedy digit
               error rate on device and the prefix beam search's on the host at every
               evaluation); transcripts with timings in `bilstm_jax.tasks.speech_decode`;
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

import numpy as np

from bilstm_jax.data import audio, fsdd, wav
from bilstm_jax.data.frames import pad_features, pad_like, stack_labels
from bilstm_jax.errors import DataFileError
from bilstm_jax.models import BiLSTMTagger
from bilstm_jax.tasks import speech_output
from bilstm_jax.tasks.ctc_objective import CTCLabels
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


@dataclasses.dataclass(frozen=True)
class DigitCTCTask(JoinedData):
  """Digit-string transcription of joined utterances: BiLSTM + CTC over 10 digits + blank.

  Joined utterances plus `CTCLabels` (`bilstm_jax.tasks.ctc_objective`): `loss` (CTC
  negative log-likelihood per utterance) and `der` (greedy digit error rate: edit
  distance over reference digits) on device; `beam_der` (the same rate of prefix beam
  search) on the host; greedy digits with their times as predictions.

  Dataset: `inputs` float32[n, frames, dims], `lengths`, `labels` int32[n, max_digits]
  (-1 past each utterance's digits).

  Attributes:
    max_tokens: digits `predictions` holds per utterance (the count is exact beyond it).
    beam_width: prefixes the beam search of `beam_der` keeps.
  """

  name: ClassVar[str] = 'fsdd_ctc'
  num_classes: ClassVar[int] = fsdd.NUM_DIGITS + 1  # the digits and the blank

  max_tokens: int = 16
  beam_width: int = 8
  records = speech_output.transcript_records  # {'file', 'transcript', 'digits': [...]}

  @classmethod
  def from_config(cls, config):
    return cls(beam_width=int(config.data.get('beam_width', 8)), **cls.speech_fields(config))

  @property
  def objective(self) -> CTCLabels:
    """`CTCLabels` of this task's `max_tokens`, `beam_width` and `step_timing` (the
    feature settings'), the blank the last of the 11 classes."""
    return CTCLabels(
      max_tokens=self.max_tokens,
      beam_width=self.beam_width,
      step_timing=self.step_timing,
      blank=BLANK,
    )

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

  def make_model(self):
    return BiLSTMTagger.from_config(self.model, num_classes=self.sizes['num_classes'])

  def final_line(self, train, dev, extra):
    return (
      f'Final CTC loss train {train["loss"]:.4f} dev {dev["loss"]:.4f};  digit error rate '
      f'(greedy) train {100 * train["der"]:.2f}% dev {100 * dev["der"]:.2f}%'
    )
