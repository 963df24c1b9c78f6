"""The Free Spoken Digit Dataset (FSDD): names, splits, joined utterances, augmentation.

Plain numpy and the standard library; knows nothing about JAX or Flax.

FSDD holds 8 kHz mono 16-bit recordings of single spoken digits named
`{digit}_{speaker}_{index}.wav` (6 speakers, 50 recordings of each digit by each; CC BY-SA
4.0). The standard test split is recordings 0-4 of every speaker and digit; the developers'
copy (../shared/data/fsdd/recordings) holds only recordings 5-49. Splits here:

  - `dev_split`: recordings 5-9 of every speaker and digit are dev, the rest (10-49)
    train. Dev is built the way the standard test split is (five recordings of every
    speaker and digit, the lowest indices present), so dev accuracy estimates test accuracy
    for the same speakers.
  - `speaker_split`: every recording of one named speaker is test, the others train: how
    well a model does on a voice it never heard.

Joined utterances (`make_joined`, `joined_set`) concatenate 2-7 recordings of one speaker
with short random silences and random gains, for CTC transcription and framewise labelling;
`frame_labels` turns their sample segments into per-frame labels (digit 0-9, `SILENCE`).

Augmentation (`Augment`, off by default) is a pure function of (seed, epoch, example
index), so a run resumed at any step draws what the uninterrupted run drew.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from bilstm_jax.data import audio
from bilstm_jax.errors import DataFileError

SAMPLE_RATE = 8000
NUM_DIGITS = 10
SILENCE = 10  # frame label between and around digits; digits are their own labels 0-9
DEV_INDICES = range(5, 10)
DEV_SEED = 20240502  # seed of the fixed joined-utterance dev set

_NAME = re.compile(r'^(\d)_([A-Za-z][A-Za-z0-9-]*)_(\d+)\.wav$')


class Recording(NamedTuple):
  """One FSDD file: what is said, by whom, which take, and where it is."""

  digit: int
  speaker: str
  index: int
  path: str


def parse_name(path: str) -> Recording:
  """Parses `{digit}_{speaker}_{index}.wav`; DataFileError naming the file otherwise."""
  m = _NAME.match(os.path.basename(path))
  if not m:
    raise DataFileError(f'{path}: not an FSDD name {{digit}}_{{speaker}}_{{index}}.wav.')
  return Recording(int(m.group(1)), m.group(2), int(m.group(3)), path)


def list_recordings(folder: str) -> list[Recording]:
  """Every recording in `folder`, sorted by (speaker, digit, index).

  Hidden files (names starting with '.') are skipped; any other entry that is not an FSDD
  name is an error, so a stray file is noticed rather than silently dropped.

  Raises:
    DataFileError: if the folder is missing or empty, or an entry is not an FSDD name.
  """
  if not os.path.isdir(folder):
    raise DataFileError(f'{folder}: no such folder.')
  recs = [parse_name(os.path.join(folder, n)) for n in os.listdir(folder) if not n.startswith('.')]
  if not recs:
    raise DataFileError(f'{folder}: holds no recordings.')
  return sorted(recs, key=lambda r: (r.speaker, r.digit, r.index))


def dev_split(
  recordings: Sequence[Recording], dev_indices: Iterable[int] = DEV_INDICES
) -> tuple[list[Recording], list[Recording]]:
  """(train, dev): recordings whose index is in `dev_indices` are dev, the rest train."""
  dev_set = set(dev_indices)
  train = [r for r in recordings if r.index not in dev_set]
  dev = [r for r in recordings if r.index in dev_set]
  return train, dev


def speaker_split(
  recordings: Sequence[Recording], test_speaker: str
) -> tuple[list[Recording], list[Recording]]:
  """(train, test): every recording of `test_speaker` is test, every other one train."""
  speakers = sorted({r.speaker for r in recordings})
  if test_speaker not in speakers:
    raise ValueError(f'Unknown speaker {test_speaker!r}; the recordings have {speakers}.')
  train = [r for r in recordings if r.speaker != test_speaker]
  test = [r for r in recordings if r.speaker == test_speaker]
  return train, test


@dataclasses.dataclass(frozen=True)
class Joined:
  """A joined utterance.

  Attributes:
    waveform: float32[samples].
    digits: int32[k], what is said, in order.
    segments: int32[k, 2], each digit's [start, end) in samples.
    speaker: who says it.
  """

  waveform: np.ndarray
  digits: np.ndarray
  segments: np.ndarray
  speaker: str


Pool = dict[str, dict[int, list[np.ndarray]]]


def make_pool(recordings: Sequence[Recording], waveforms: Sequence[np.ndarray]) -> Pool:
  """speaker -> digit -> waveforms, for `make_joined`; waveforms[i] is recordings[i]'s."""
  if len(recordings) != len(waveforms):
    raise ValueError(f'{len(recordings)} recordings but {len(waveforms)} waveforms.')
  pool: Pool = {}
  for r, w in zip(recordings, waveforms, strict=True):
    pool.setdefault(r.speaker, {}).setdefault(r.digit, []).append(w)
  return pool


def make_joined(
  pool: Pool,
  rng: np.random.Generator,
  num_digits: tuple[int, int] = (2, 7),
  silence_ms: tuple[float, float] = (50.0, 300.0),
  gain_db: tuple[float, float] = (-6.0, 6.0),
  silence_dbfs: float | None = -60.0,
  sample_rate: int = SAMPLE_RATE,
) -> Joined:
  """One joined utterance: recordings of one speaker with silences between and around.

  Draws, in order: a speaker; a count k uniform in `num_digits` (inclusive); k digits
  uniformly among those the speaker has; a recording of each; k + 1 silences uniform in
  `silence_ms` (before, between and after the digits); a gain per digit uniform in
  `gain_db`. Silences hold Gaussian noise at `silence_dbfs` RMS (None: exact zeros) so
  they look like a quiet room rather than digital silence. The result is clipped to
  [-1, 1].

  Args:
    pool: from `make_pool`.
    rng: the only source of randomness.

  Returns:
    a `Joined` with segments [start, end) of each digit in the waveform.
  """
  speaker = sorted(pool)[rng.integers(len(pool))]
  by_digit = pool[speaker]
  have = sorted(by_digit)
  k = int(rng.integers(num_digits[0], num_digits[1] + 1))
  digits = np.asarray([have[i] for i in rng.integers(len(have), size=k)], np.int32)
  pieces = [by_digit[d][rng.integers(len(by_digit[d]))] for d in digits]
  gaps = np.round(rng.uniform(*silence_ms, size=k + 1) * sample_rate / 1000).astype(int)
  gains = 10.0 ** (rng.uniform(*gain_db, size=k) / 20.0)
  parts, segments, pos = [], [], 0
  for i in range(k + 1):
    if silence_dbfs is None:
      parts.append(np.zeros(gaps[i]))
    else:
      parts.append(rng.standard_normal(gaps[i]) * 10.0 ** (silence_dbfs / 20.0))
    pos += gaps[i]
    if i < k:
      parts.append(np.asarray(pieces[i], np.float64) * gains[i])
      segments.append((pos, pos + len(pieces[i])))
      pos += len(pieces[i])
  waveform = np.clip(np.concatenate(parts), -1.0, 1.0).astype(np.float32)
  return Joined(waveform, digits, np.asarray(segments, np.int32).reshape(k, 2), speaker)


def joined_set(pool: Pool, num: int, seed: int = DEV_SEED, **kwargs) -> list[Joined]:
  """`num` joined utterances, utterance i drawn from `default_rng([seed, i])`.

  The same (pool, seed) gives the same set, and the first n utterances do not depend on
  `num`. Keyword arguments go to `make_joined`.
  """
  return [make_joined(pool, np.random.default_rng([seed, i]), **kwargs) for i in range(num)]


def frame_labels(
  segments: np.ndarray, digits: np.ndarray, num_samples: int, config: audio.FeatureConfig
) -> np.ndarray:
  """Per-frame labels of a joined utterance for the frames `config` cuts.

  Frame i covers samples [i * hop, i * hop + win); it takes the digit whose segment
  holds its centre sample i * hop + win // 2, or `SILENCE` if none does.

  Args:
    segments: int[k, 2], [start, end) in samples.
    digits: int[k].
    num_samples: length of the waveform.
    config: the feature settings (window and hop).

  Returns:
    int32[frames], frames = `audio.num_frames(num_samples, win, hop)`.
  """
  win, hop = config.win_length, config.hop_length
  centres = np.arange(audio.num_frames(num_samples, win, hop)) * hop + win // 2
  labels = np.full(len(centres), SILENCE, np.int32)
  for (start, end), d in zip(segments, digits, strict=True):
    labels[(centres >= start) & (centres < end)] = d
  return labels


@dataclasses.dataclass(frozen=True)
class Augment:
  """Training-time augmentation; the defaults do nothing.

  Attributes:
    max_shift_ms: waveforms move by a shift uniform in [-max, max] ms, zeros filling the
      gap, the length kept. For joined utterances keep it below the shortest edge silence
      so no digit is cut.
    snr_db: (low, high): white noise added at an SNR uniform in [low, high] dB relative to
      the waveform's mean power; None adds none.
    time_masks, max_time_mask: how many time masks, each of width uniform in
      [0, max_time_mask] frames (SpecAugment).
    freq_masks, max_freq_mask: the same over feature dimensions.
    mask_value: what masked features become; 0 is the mean of normalised features.
  """

  max_shift_ms: float = 0.0
  snr_db: tuple[float, float] | None = None
  time_masks: int = 0
  max_time_mask: int = 0
  freq_masks: int = 0
  max_freq_mask: int = 0
  mask_value: float = 0.0


def _rng(seed: int, epoch: int, index: int, stream: int) -> np.random.Generator:
  # One stream per (seed, epoch, example, kind of augmentation): independent draws that
  # need no state carried between steps.
  return np.random.default_rng([seed, epoch, index, stream])


def augment_waveform(
  waveform: np.ndarray,
  aug: Augment,
  seed: int,
  epoch: int,
  index: int,
  sample_rate: int = SAMPLE_RATE,
) -> tuple[np.ndarray, int]:
  """Time shift, then additive noise, drawn from (seed, epoch, index).

  Args:
    waveform: float[samples].
    aug: the settings.
    seed: the run's seed.
    epoch: the epoch.
    index: the example's index in the dataset.

  Returns:
    (float32[samples], shift): shift in samples, positive when the signal moved later;
    `shift_segments` moves a joined utterance's segments to match.
  """
  rng = _rng(seed, epoch, index, 0)
  x = np.asarray(waveform, np.float64)
  max_shift = int(round(aug.max_shift_ms * sample_rate / 1000))
  shift = int(rng.integers(-max_shift, max_shift + 1)) if max_shift else 0
  if shift > 0:
    x = np.concatenate([np.zeros(shift), x[:-shift]])
  elif shift < 0:
    x = np.concatenate([x[-shift:], np.zeros(-shift)])
  if aug.snr_db is not None:
    snr = rng.uniform(*aug.snr_db)
    power = np.mean(x**2)
    x = x + rng.standard_normal(len(x)) * np.sqrt(power / 10.0 ** (snr / 10.0))
  return x.astype(np.float32), shift


def shift_segments(segments: np.ndarray, shift: int, num_samples: int) -> np.ndarray:
  """int32[k, 2] segments moved by `shift` samples and clipped to [0, num_samples]."""
  return np.clip(np.asarray(segments) + shift, 0, num_samples).astype(np.int32)


def spec_augment(
  features: np.ndarray, aug: Augment, seed: int, epoch: int, index: int
) -> np.ndarray:
  """SpecAugment-style time and frequency masks drawn from (seed, epoch, index).

  Args:
    features: float[frames, dims] (normalised, so `mask_value` 0 is the mean).

  Returns:
    float32[frames, dims], a copy.
  """
  rng = _rng(seed, epoch, index, 1)
  x = np.array(features, np.float32)
  frames, dims = x.shape
  for _ in range(aug.time_masks):
    width = int(rng.integers(0, min(aug.max_time_mask, frames) + 1))
    start = int(rng.integers(0, frames - width + 1))
    x[start : start + width] = aug.mask_value
  for _ in range(aug.freq_masks):
    width = int(rng.integers(0, min(aug.max_freq_mask, dims) + 1))
    start = int(rng.integers(0, dims - width + 1))
    x[:, start : start + width] = aug.mask_value
  return x
