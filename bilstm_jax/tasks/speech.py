"""Speech tasks on wav files named like the Free Spoken Digit Dataset (FSDD).

  fsdd         one spoken digit per file -> its digit: features pooled over valid frames
               (`SpokenDigitTask`: the wav source + `SequenceLabels`);
  fsdd_ctc,    joined utterances of 2-7 digits: `bilstm_jax.tasks.speech_joined`.
  fsdd_frames

Sources. 'train' and 'dev' come from `folder`: recordings 5-9 of every speaker and digit
are dev, the rest train (`fsdd.dev_split`), or, with `test_speaker` set, every recording
of that speaker is dev and the others train (`fsdd.speaker_split`). Any other source is a
folder of wavs, one .wav file, or a .txt list of wav paths (one per line, relative to the
list's folder). Labelled reads take labels from FSDD names `{digit}_{speaker}_{index}.wav`;
prediction reads any wav name, in sorted order. Joined tasks build their dev set (and a
test folder's) with the fixed seed `fsdd.DEV_SEED` from the split's recordings, so every
run scores the same utterances; the training utterances come from `data_seed`.

Features (`bilstm_jax.data.audio`) and the normalisation statistics fitted on the clean
training features are part of the task's `spec()` (task.json), so evaluation and
prediction compute exactly what training saw, whatever the config says later.

Augmentation (`fsdd.Augment`, off by default) is drawn afresh every epoch
(`epoch_transform`): each training example's features are recomputed from its clean
waveform, shifted and noised, then normalised with the clean statistics and masked, all
drawn from (run seed, epoch, example index). A resumed run redraws exactly what the
uninterrupted run drew; dev and test are never augmented.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from typing import ClassVar

import numpy as np

from bilstm_jax.data import audio, feature_cache, fsdd, wav
from bilstm_jax.data.frames import pad_features, pad_like, stack_frames
from bilstm_jax.errors import CheckpointError, ConfigError, DataFileError
from bilstm_jax.models import EncoderConfig
from bilstm_jax.tasks import base, speech_output
from bilstm_jax.tasks.classification import classifier
from bilstm_jax.tasks.objectives import SequenceLabels
from bilstm_jax.tasks.speech_config import augment_settings, feature_settings

NORMALISE = ('train', 'utterance', 'none')
BLANK = fsdd.NUM_DIGITS  # CTC blank: the last of 11 classes, the id framewise silence has


def _list_lines(path: str) -> list[str]:
  """The lines of a .txt list of wavs (UTF-8); DataFileError naming a line that is not."""
  with open(path, 'rb') as f:
    raw = f.read().split(b'\n')
  lines = []
  for lineno, line in enumerate(raw, 1):
    try:
      lines.append(line.decode('utf-8'))
    except UnicodeDecodeError as e:
      raise DataFileError(f'{path}:{lineno}: not UTF-8 ({e.reason}).') from e
  return lines


@functools.lru_cache(maxsize=16)
def _features(paths: tuple[str, ...], config: audio.FeatureConfig, cache_dir: str):
  # Train and dev are read several times in one process (fit, check, evaluate); the disk
  # cache, if any, serves other processes.
  return tuple(feature_cache.load_features(list(paths), config, cache_dir or None, name='fsdd'))


def _one_blas_thread():
  # Per-utterance features are many small matrix products: BLAS threads fighting over
  # them make an epoch's augmentation several times slower on a busy machine.
  try:
    from threadpoolctl import threadpool_limits  # optional: without it, BLAS as is
  except ImportError:
    return contextlib.nullcontext()
  return threadpool_limits(1, user_api='blas')


@functools.lru_cache(maxsize=2)
def _waveforms(paths: tuple[str, ...], sample_rate: int, resample: bool) -> tuple:
  # Every epoch redraws augmentation from the clean waveforms: read the files once.
  return tuple(wav.read_wav(p, sample_rate, resample) for p in paths)


@dataclasses.dataclass(frozen=True)
class SpeechData(base.Task):
  """What the speech tasks share: wav sources, features, normalisation, augmentation.

  Attributes:
    folder: the FSDD-named recordings 'train' and 'dev' are split from.
    test_speaker: '' for the index split (5-9 dev); a speaker's name for a
      speaker-disjoint split (that speaker is dev).
    features: `audio.FeatureConfig` keyword arguments.
    normalise: 'train' (per-dimension statistics of the clean training features),
      'utterance' (per-utterance mean and variance) or 'none'.
    stats: the fitted 'train' statistics {'mean', 'std'}; None before `fit`.
    augment: `fsdd.Augment` keyword arguments: the augmentation `epoch_transform` draws
      afresh every epoch (all off: none).
    data_seed: seeds the joined training utterances.
    cache_dir: where single-file features are cached ('' for no cache).
    frame_stack: k > 1 concatenates k consecutive normalised frames into one model step
      (dims x k, steps / k): the recurrence runs k times fewer steps.
  """

  num_classes: ClassVar[int]  # the model's outputs, fixed by the task, not by the data

  folder: str = ''
  test_speaker: str = ''
  features: dict = dataclasses.field(default_factory=dict)
  normalise: str = 'train'
  stats: dict | None = None
  augment: dict = dataclasses.field(default_factory=dict)
  data_seed: int = 0
  cache_dir: str = ''
  frame_stack: int = 1

  @classmethod
  def speech_fields(cls, config) -> dict:
    d = config.data
    normalise = d.get('normalise', 'train')
    if normalise not in NORMALISE:
      raise ValueError(f'data.normalise must be one of {NORMALISE}; got {normalise!r}.')
    return {
      'sources': {'test': d.get('test') or ''},
      'model': EncoderConfig.from_config(config.model),
      'folder': d.get('folder', ''),
      'test_speaker': d.get('test_speaker', '') or '',
      'features': feature_settings(d),
      'normalise': normalise,
      'augment': augment_settings(d),
      'data_seed': int(d.get('seed', 0)),
      'cache_dir': d.get('cache_dir', '') or '',
      'frame_stack': int(d.get('frame_stack', 1)),
    }

  @classmethod
  def validate_config(cls, config) -> None:
    super().validate_config(config)
    if 'augment_copies' in config.data:
      raise ConfigError(
        f'config.data.augment_copies={config.data.augment_copies!r} was removed: augmentation '
        'is now drawn afresh every epoch from the clean recordings whenever data.shift_ms, '
        'data.snr_db_max, data.time_masks or data.freq_masks is set. Drop the key.'
      )

  @property
  def feature_config(self) -> audio.FeatureConfig:
    return audio.FeatureConfig(**self.features)

  # -------------------------------------------------------------------- sources

  def recordings(self, source: str, labelled: bool) -> list[fsdd.Recording]:
    """The recordings of a split, folder, wav file or .txt list (digit -1 if unknown)."""
    if source == 'test':
      source = self.sources.get('test') or ''
      if not source or source == 'test':
        raise DataFileError('No test data: set config.data.test to a folder, wav or list.')
    if source in ('train', 'dev'):
      recs = fsdd.list_recordings(self.folder)
      if self.test_speaker:
        train, dev = fsdd.speaker_split(recs, self.test_speaker)
      else:
        train, dev = fsdd.dev_split(recs)
      out = train if source == 'train' else dev
      if not out:
        raise DataFileError(f'{self.folder}: the {source} split holds no recordings.')
      return out
    if os.path.isdir(source):
      if labelled:
        return fsdd.list_recordings(source)
      names = sorted(n for n in os.listdir(source) if n.endswith('.wav') and n[0] != '.')
      if not names:
        raise DataFileError(f'{source}: holds no .wav files.')
      paths = [os.path.join(source, n) for n in names]
    elif source.endswith('.txt'):
      if not os.path.isfile(source):
        raise DataFileError(f'{source}: no such file list.')
      lines = [ln.strip() for ln in _list_lines(source) if ln.strip() and ln[0] != '#']
      root = os.path.dirname(os.path.abspath(source))
      paths = [os.path.join(root, ln) for ln in lines]
      if not paths:
        raise DataFileError(f'{source}: lists no files.')
    elif source.endswith('.wav'):
      paths = [source]
    else:
      raise DataFileError(
        f"{source!r}: not 'train', 'dev', 'test', a folder, a .wav file or a .txt list of wavs."
      )
    if labelled:
      return [fsdd.parse_name(p) for p in paths]
    return [fsdd.Recording(-1, '', -1, p) for p in paths]

  def example_files(self, source) -> list[str] | None:
    """The wav file of each example `read(source, labelled=False)` makes (None: the
    examples are no files, e.g. arrays)."""
    if not isinstance(source, str):
      return None
    paths = [r.path for r in self.recordings(source, labelled=False)]
    return paths

  def encode(self, examples: list) -> dict:
    """Waveforms (float[samples_i] each, at the task's sample rate) as a dataset."""
    return waveform_dataset(self, examples)

  def raw_features(self, recs: list[fsdd.Recording]) -> list[np.ndarray]:
    return list(_features(tuple(r.path for r in recs), self.feature_config, self.cache_dir))

  def train_stats(self, source: str = 'train') -> dict:
    """The normalisation statistics {'mean', 'std'} of the clean features of `source`."""
    stats = audio.FeatureStats.fit(self.raw_features(self.recordings(source, True)))
    return {'mean': list(stats.mean), 'std': list(stats.std)}

  def normalised(self, feats: list[np.ndarray], stats: dict | None, mask=None) -> list[np.ndarray]:
    """Normalised, masked and stacked (see `frame_stack`) float32[steps, dims x k] features.

    Args:
      feats: float[frames_i, dims] raw features.
      stats: the 'train' statistics {'mean', 'std'} (None for the other `normalise`).
      mask: None, or (i, float32[frames, dims]) -> the same masked: applied to example i
        after normalisation and before stacking (SpecAugment).
    """
    if self.normalise == 'utterance':
      feats = [audio.cmvn(f) for f in feats]
    elif self.normalise == 'train':
      fs = audio.FeatureStats(tuple(stats['mean']), tuple(stats['std']))
      feats = [fs.apply(f) for f in feats]
    else:
      feats = [np.asarray(f, np.float32) for f in feats]
    if mask is not None:
      feats = [mask(i, f) for i, f in enumerate(feats)]
    return [stack_frames(f, self.frame_stack) for f in feats]

  @property
  def augmenting(self) -> bool:
    """Whether `augment` changes anything (else `epoch_transform` changes nothing)."""
    return fsdd.Augment(**self.augment) != fsdd.Augment()

  def epoch_features(self, waves, seed: int, epoch: int, stats: dict | None):
    """Augmented features of clean waveforms, as epoch `epoch` sees them.

    Waveform i is shifted and noised (`fsdd.augment_waveform`), featurised, normalised
    with the clean training statistics, masked (`fsdd.spec_augment`) and stacked, every
    draw from (seed, epoch, i).

    Args:
      waves: float[samples_i] each.

    Returns:
      (float32[steps_i, dims x k] each, the shift of each waveform in samples).
    """
    aug, fc = fsdd.Augment(**self.augment), self.feature_config
    moved = [
      fsdd.augment_waveform(w, aug, seed, epoch, i, fc.sample_rate) for i, w in enumerate(waves)
    ]
    with _one_blas_thread():
      feats = [audio.compute_features(w, fc) for w, _ in moved]

    def mask(i, f):
      return fsdd.spec_augment(f, aug, seed, epoch, i)

    return self.normalised(feats, stats, mask), [shift for _, shift in moved]

  @property
  def step_timing(self) -> tuple[int, int, int]:
    """(hop, window, sample rate) in samples of one model step (after stacking)."""
    fc, k = self.feature_config, self.frame_stack
    return fc.hop_length * k, fc.win_length + (k - 1) * fc.hop_length, fc.sample_rate

  def stats_if_needed(self) -> dict | None:
    """The fitted statistics for `normalise='train'`, else None."""
    if self.normalise != 'train':
      return None
    if self.stats is None:
      raise self.not_fitted('computing features (the statistics of the training features)')
    return self.stats

  # ----------------------------------------------------------------- spec, fit

  def fit(self, source: str = 'train'):
    """This task with its sizes (from the feature settings and `num_classes`) and, for
    `normalise='train'`, the statistics of `source`'s clean features; no dev recording is
    read."""
    stats = self.train_stats(source) if self.normalise == 'train' else None
    sizes = {'input_size': self.sizes_dims, 'num_classes': self.num_classes}
    return dataclasses.replace(self, sizes=sizes, stats=stats)

  def spec(self) -> dict:
    return {
      **super().spec(),
      'features': dict(self.features),
      'normalise': self.normalise,
      'stats': self.stats,
      'frame_stack': self.frame_stack,
    }

  def with_spec(self, spec: dict):
    task = super().with_spec(spec)
    try:
      return dataclasses.replace(
        task,
        features=dict(spec['features']),
        normalise=spec['normalise'],
        stats=spec['stats'],
        frame_stack=int(spec.get('frame_stack', 1)),
      )
    except (KeyError, TypeError, ValueError) as e:
      raise CheckpointError(f'task.json: no readable feature settings ({e!r}).') from e

  @property
  def sizes_dims(self) -> int:
    return self.feature_config.dims * self.frame_stack


@dataclasses.dataclass(frozen=True)
class SpokenDigitTask(SpeechData):
  """FSDD spoken-digit classification: one digit per file, BiLSTM + pooling over frames.

  Dataset: `inputs` float32[n, frames, dims], `lengths` int32[n], `labels` int32[n].

  Attributes:
    pooling: 'mean', 'max' or 'attention' over valid frames.
  """

  name: ClassVar[str] = 'fsdd'
  num_classes: ClassVar[int] = fsdd.NUM_DIGITS  # whatever digits the training files hold
  objective: ClassVar[SequenceLabels] = SequenceLabels()

  pooling: str = 'mean'

  @classmethod
  def from_config(cls, config):
    return cls(pooling=config.model.get('pooling', 'mean'), **cls.speech_fields(config))

  records = speech_output.digit_records  # {'file', 'digit', 'probability', ...}
  make_model = classifier  # a BiLSTMClassifier with `pooling`

  def read(self, source: str, labelled: bool = True) -> dict:
    recs = self.recordings(source, labelled)
    stats = self.stats_if_needed()
    feats = self.normalised(self.raw_features(recs), stats)
    labels = [r.digit for r in recs]
    inputs, lengths = pad_features(feats, self.sizes_dims)
    dataset = {'inputs': inputs, 'lengths': lengths}
    if labelled:
      dataset['labels'] = np.asarray(labels, np.int32)
    self.check(dataset, source)
    return dataset

  def epoch_transform(self, train_set: dict, seed: int, epoch: int) -> dict:
    """The training set with every recording augmented afresh (`epoch_features`), drawn
    from (seed, epoch, index); the set itself when `augment` does nothing."""
    if not self.augmenting:
      return train_set
    fc = self.feature_config
    paths = tuple(r.path for r in self.recordings('train', True))
    waves = _waveforms(paths, fc.sample_rate, fc.resample)
    feats, _ = self.epoch_features(waves, seed, epoch, self.stats_if_needed())
    return {**train_set, 'inputs': pad_like(feats, train_set)}


def waveform_dataset(task: SpeechData, waveforms) -> dict:
  """Waveforms as the dataset a fitted speech task's model takes, for `Trained.predict`.

  Args:
    task: a fitted (or loaded) speech task: its features, statistics and stacking apply.
    waveforms: float[samples_i] each, at the task's sample rate, in [-1, 1].

  Returns:
    {'inputs': float32[n, steps, dims], 'lengths': int32[n]}.

  Example:
    >>> trained = bilstm_jax.load('runs/fsdd')
    >>> trained.predict(speech.waveform_dataset(trained.task, [wave]))['label']
  """
  fc = task.feature_config
  feats = [audio.compute_features(np.asarray(w, np.float32), fc) for w in waveforms]
  stats = task.stats if task.normalise == 'train' else None
  if task.normalise == 'train' and stats is None:
    raise ValueError('The task is not fitted: its normalisation statistics are unknown.')
  inputs, lengths = pad_features(task.normalised(feats, stats), task.sizes_dims)
  return {'inputs': inputs, 'lengths': lengths}
