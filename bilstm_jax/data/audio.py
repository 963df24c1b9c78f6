"""Speech features: log-mel and MFCC, and their normalisation (wavs: `data.wav`).

Plain numpy and the standard library; knows nothing about JAX or Flax.

Features follow the HTK/Kaldi recipe (`FeatureConfig` holds every setting):
  1. optional pre-emphasis y[n] = x[n] - a * x[n - 1] over the whole signal;
  2. frames of `window_ms` every `hop_ms`; frame i covers samples [i * hop, i * hop + win)
     and a trailing partial frame is dropped (Kaldi's snip_edges); a signal shorter than
     one window is zero-padded to one frame;
  3. a symmetric Hamming or Hann window, the power spectrum |rfft(frame, n_fft)|^2 (not
     divided by n_fft);
  4. triangular filters with centres equally spaced on the HTK mel scale
     mel(f) = 2595 log10(1 + f / 700), each linear in Hz between its neighbours' centres,
     peak 1, no area normalisation;
  5. the natural log of each filter's energy, floored at `log_floor`: the log-mel features;
  6. for MFCC, the orthonormal DCT-II of the log-mel vector, first `num_ceps` coefficients
     (c0 included, no liftering);
  7. optional deltas and delta-deltas: regression over +-`delta_window` frames, the edge
     frames repeated, appended after the static features.

The result is float32[frames, dims]. `bilstm_jax.data.feature_cache.load_features` caches a
list of files' features in one .npz per (files, settings) pair.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class FeatureConfig:
  """Every setting of the feature pipeline; part of the cache key.

  Attributes:
    sample_rate: Hz; files at another rate are an error unless `resample`.
    kind: 'logmel' (num_mels dims) or 'mfcc' (num_ceps dims).
    window_ms, hop_ms: frame length and frame step.
    window: 'hamming' or 'hann' (symmetric).
    preemphasis: coefficient a of y[n] = x[n] - a x[n-1]; 0 turns it off.
    n_fft: FFT length; None means the next power of two >= the window length.
    num_mels: triangular filters.
    fmin, fmax: Hz covered by the filters; fmax None means sample_rate / 2.
    num_ceps: MFCC coefficients kept (c0 included).
    log_floor: energies below it are raised to it before the log (silence stays finite).
    delta_order: 0 static only, 1 adds deltas, 2 adds deltas and delta-deltas.
    delta_window: N of the delta regression over +-N frames.
    resample: resample files at another rate to `sample_rate` instead of raising.
  """

  sample_rate: int = 8000
  kind: str = 'mfcc'
  window_ms: float = 25.0
  hop_ms: float = 10.0
  window: str = 'hamming'
  preemphasis: float = 0.97
  n_fft: int | None = None
  num_mels: int = 40
  fmin: float = 20.0
  fmax: float | None = None
  num_ceps: int = 13
  log_floor: float = 1e-10
  delta_order: int = 0
  delta_window: int = 2
  resample: bool = False

  def __post_init__(self):
    if self.kind not in ('logmel', 'mfcc'):
      raise ValueError(f"FeatureConfig.kind must be 'logmel' or 'mfcc'; got {self.kind!r}.")
    if self.window not in ('hamming', 'hann'):
      raise ValueError(f"FeatureConfig.window must be 'hamming' or 'hann'; got {self.window!r}.")
    if self.win_length < 2 or self.hop_length < 1:
      raise ValueError(
        f'FeatureConfig: window {self.window_ms} ms and hop {self.hop_ms} ms give '
        f'{self.win_length} and {self.hop_length} samples; need >= 2 and >= 1.'
      )
    if self.fft_length < self.win_length:
      raise ValueError(f'FeatureConfig: n_fft {self.n_fft} < window {self.win_length} samples.')
    if not 0 <= self.fmin < self.top_hz <= self.sample_rate / 2:
      raise ValueError(
        f'FeatureConfig: need 0 <= fmin < fmax <= sample_rate / 2; got fmin {self.fmin}, '
        f'fmax {self.top_hz}, sample_rate {self.sample_rate}.'
      )
    if self.kind == 'mfcc' and not 1 <= self.num_ceps <= self.num_mels:
      raise ValueError(f'FeatureConfig: num_ceps {self.num_ceps} not in [1, {self.num_mels}].')
    if self.delta_order not in (0, 1, 2) or self.delta_window < 1:
      raise ValueError(
        f'FeatureConfig: delta_order must be 0, 1 or 2 and delta_window >= 1; got '
        f'{self.delta_order} and {self.delta_window}.'
      )

  @property
  def win_length(self) -> int:
    """The analysis window in samples (`window_ms` at `sample_rate`)."""
    return int(round(self.window_ms * self.sample_rate / 1000))

  @property
  def hop_length(self) -> int:
    """The step between frames in samples (`hop_ms` at `sample_rate`)."""
    return int(round(self.hop_ms * self.sample_rate / 1000))

  @property
  def fft_length(self) -> int:
    """`n_fft`, or else the smallest power of two that holds a window."""
    return self.n_fft or 1 << (self.win_length - 1).bit_length()

  @property
  def top_hz(self) -> float:
    """The filterbank's upper edge: `fmax`, or else the Nyquist frequency."""
    return self.fmax if self.fmax is not None else self.sample_rate / 2

  @property
  def dims(self) -> int:
    """Features per frame: mel bands or cepstra, times (1 + `delta_order`)."""
    static = self.num_mels if self.kind == 'logmel' else self.num_ceps
    return static * (1 + self.delta_order)


def num_frames(num_samples: int, win_length: int, hop_length: int) -> int:
  """Frames of a signal: 1 + (samples - win) // hop, and 1 for a signal shorter than win."""
  return 1 + max(0, num_samples - win_length) // hop_length


def frame_signal(x: np.ndarray, win_length: int, hop_length: int) -> np.ndarray:
  """float[samples] -> float[frames, win_length] (a strided view where no padding is needed)."""
  if len(x) < win_length:
    x = np.pad(x, (0, win_length - len(x)))
  n = num_frames(len(x), win_length, hop_length)
  return np.lib.stride_tricks.sliding_window_view(x, win_length)[
    : (n - 1) * hop_length + 1 : hop_length
  ]


def window_fn(name: str, length: int) -> np.ndarray:
  """float64[length]: the symmetric Hamming or Hann window."""
  return np.hamming(length) if name == 'hamming' else np.hanning(length)


def power_spectrum(frames: np.ndarray, n_fft: int) -> np.ndarray:
  """float[frames, win] (windowed) -> float64[frames, n_fft // 2 + 1]: |rfft|^2."""
  spectrum = np.fft.rfft(frames, n_fft, axis=-1)
  return spectrum.real**2 + spectrum.imag**2


def hz_to_mel(f):
  """HTK mel scale: 2595 log10(1 + f / 700)."""
  return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
  """The inverse of `hz_to_mel`: float64 Hz of mel values (any shape)."""
  return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_filterbank(
  num_mels: int, n_fft: int, sample_rate: int, fmin: float, fmax: float
) -> np.ndarray:
  """Triangular filters on the HTK mel scale.

  Filter m rises linearly (in Hz) from centre m - 1 to centre m and falls to centre m + 1;
  the num_mels + 2 centres (edges included) are equally spaced in mel from fmin to fmax.

  Returns:
    float64[n_fft // 2 + 1, num_mels]: weight of each FFT bin in each filter.

  Raises:
    ValueError: if a filter holds no FFT bin (too many filters for this n_fft).
  """
  centres = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), num_mels + 2))
  bins = np.arange(n_fft // 2 + 1) * sample_rate / n_fft  # [bins]
  lo, mid, hi = centres[:-2], centres[1:-1], centres[2:]  # [mels] each
  rise = (bins[:, None] - lo) / (mid - lo)
  fall = (hi - bins[:, None]) / (hi - mid)
  weights = np.maximum(0.0, np.minimum(rise, fall))
  empty = np.flatnonzero(weights.max(axis=0) == 0)
  if empty.size:
    raise ValueError(
      f'mel filter {int(empty[0])} of {num_mels} holds no FFT bin: use fewer mels or a '
      f'larger n_fft than {n_fft}.'
    )
  return weights


def dct_matrix(num_inputs: int, num_outputs: int) -> np.ndarray:
  """float64[num_inputs, num_outputs]: the orthonormal DCT-II, `x @ D` transforms rows.

  D[m, k] = s_k cos(pi k (m + 1/2) / M), s_0 = sqrt(1 / M), s_k = sqrt(2 / M) otherwise.
  """
  m = np.arange(num_inputs)[:, None]
  k = np.arange(num_outputs)[None, :]
  d = np.cos(np.pi * k * (m + 0.5) / num_inputs) * np.sqrt(2.0 / num_inputs)
  d[:, 0] = np.sqrt(1.0 / num_inputs)
  return d


def deltas(features: np.ndarray, window: int = 2) -> np.ndarray:
  """Regression deltas over +-window frames, edge frames repeated.

  d[t] = sum_{n=1..N} n (c[t + n] - c[t - n]) / (2 sum_{n=1..N} n^2).

  Args:
    features: float[frames, dims].
    window: N.

  Returns:
    float[frames, dims], the dtype of `features`.
  """
  t = len(features)
  padded = np.pad(features, ((window, window), (0, 0)), mode='edge')
  out = np.zeros_like(features, dtype=np.float64)
  for n in range(1, window + 1):
    out += n * (padded[window + n : window + n + t] - padded[window - n : window - n + t])
  return (out / (2 * sum(n * n for n in range(1, window + 1)))).astype(features.dtype)


def compute_features(waveform: np.ndarray, config: FeatureConfig) -> np.ndarray:
  """Log-mel or MFCC features (with deltas if configured) of one waveform.

  Args:
    waveform: float[samples] at `config.sample_rate`.
    config: the settings.

  Returns:
    float32[frames, config.dims], frames = `num_frames(samples, win, hop)`.
  """
  x = np.asarray(waveform, np.float64)
  if config.preemphasis:
    x = np.concatenate([x[:1], x[1:] - config.preemphasis * x[:-1]])
  frames = frame_signal(x, config.win_length, config.hop_length)
  power = power_spectrum(frames * window_fn(config.window, config.win_length), config.fft_length)
  fbank = _filterbank(config)
  feats = np.log(np.maximum(power @ fbank, config.log_floor))
  if config.kind == 'mfcc':
    feats = feats @ dct_matrix(config.num_mels, config.num_ceps)
  parts = [feats]
  for _ in range(config.delta_order):
    parts.append(deltas(parts[-1], config.delta_window))
  return np.concatenate(parts, axis=1).astype(np.float32)


_FILTERBANKS: dict[tuple, np.ndarray] = {}


def _filterbank(config: FeatureConfig) -> np.ndarray:
  # Built once per setting: files are many, settings few.
  key = (config.num_mels, config.fft_length, config.sample_rate, config.fmin, config.top_hz)
  if key not in _FILTERBANKS:
    _FILTERBANKS[key] = mel_filterbank(*key)
  return _FILTERBANKS[key]


def cmvn(features: np.ndarray, variance: bool = True, eps: float = 1e-5) -> np.ndarray:
  """Per-utterance mean (and variance) normalisation over frames.

  Args:
    features: float[frames, dims].
    variance: also divide by the per-dimension standard deviation (floored at eps).

  Returns:
    float32[frames, dims].
  """
  x = np.asarray(features, np.float64)
  x = x - x.mean(axis=0)
  if variance:
    x = x / np.maximum(x.std(axis=0), eps)
  return x.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """Per-dimension mean and standard deviation fitted on a training split.

  Example:
    >>> stats = FeatureStats.fit(train_features)
    >>> normed = stats.apply(dev_features[0])
    >>> FeatureStats.from_json(stats.to_json()) == stats
    True
  """

  mean: tuple[float, ...]
  std: tuple[float, ...]

  @classmethod
  def fit(cls, features: Sequence[np.ndarray], eps: float = 1e-5) -> FeatureStats:
    """Statistics over every frame of every array (float[frames, dims] each)."""
    if not features:
      raise ValueError('FeatureStats.fit needs at least one feature array.')
    dims = {f.shape[1] for f in features}
    if len(dims) != 1:
      raise ValueError(f'FeatureStats.fit: arrays of different dims {sorted(dims)}.')
    # Sums in float64: a few hundred thousand frames lose digits in a float32 sum.
    total = sum(len(f) for f in features)
    mean = sum(np.asarray(f, np.float64).sum(axis=0) for f in features) / total
    var = sum(((np.asarray(f, np.float64) - mean) ** 2).sum(axis=0) for f in features) / total
    std = np.maximum(np.sqrt(var), eps)
    return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

  def apply(self, features: np.ndarray) -> np.ndarray:
    """float[frames, dims] -> float32[frames, dims], (x - mean) / std."""
    if features.shape[-1] != len(self.mean):
      raise ValueError(
        f'FeatureStats were fitted on {len(self.mean)} dims; features have {features.shape[-1]}.'
      )
    mean = np.asarray(self.mean, np.float32)
    std = np.asarray(self.std, np.float32)
    return ((np.asarray(features, np.float32) - mean) / std).astype(np.float32)

  def to_json(self) -> str:
    """The statistics as JSON text, which `from_json` reads back."""
    return json.dumps({'mean': list(self.mean), 'std': list(self.std)})

  @classmethod
  def from_json(cls, text: str) -> FeatureStats:
    """The inverse of `to_json`; ValueError if `text` is not such a document."""
    try:
      d = json.loads(text)
      mean, std = [float(v) for v in d['mean']], [float(v) for v in d['std']]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
      raise ValueError(f'Not a FeatureStats JSON document: {e}') from e
    if len(mean) != len(std) or min(std, default=1.0) <= 0:
      raise ValueError('FeatureStats JSON: mean and std differ in length or std <= 0.')
    return cls(tuple(mean), tuple(std))
