"""bilstm_jax.data.audio: wav reading and its errors, features against direct formulas, cache."""

import math
import os
import struct
import wave

import numpy as np
import pytest

from bilstm_jax.data import audio, feature_cache, wav
from bilstm_jax.errors import DataFileError

RATE = 8000


def tone(freq: float, seconds: float, rate: int = RATE, amp: float = 0.5) -> np.ndarray:
  t = np.arange(int(round(seconds * rate))) / rate
  return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write(path, samples, rate=RATE, channels=1, width=2) -> str:
  """A PCM wav written with the stdlib, any channel count and sample width."""
  x = np.repeat(np.asarray(samples, np.float64)[:, None], channels, axis=1)
  if width == 1:
    data = np.round(x * 127 + 128).astype(np.uint8).tobytes()
  else:
    data = np.round(x * 32767).astype('<i2').tobytes()
  with wave.open(str(path), 'wb') as f:
    f.setnchannels(channels)
    f.setsampwidth(width)
    f.setframerate(rate)
    f.writeframes(data)
  return str(path)


def float_wav(path) -> str:
  """A RIFF/WAVE file in IEEE float format (tag 3), which the stdlib cannot write."""
  data = np.zeros(10, '<f4').tobytes()
  fmt = struct.pack('<HHIIHH', 3, 1, RATE, RATE * 4, 4, 32)
  body = b'WAVE' + b'fmt ' + struct.pack('<I', len(fmt)) + fmt
  body += b'data' + struct.pack('<I', len(data)) + data
  with open(path, 'wb') as f:
    f.write(b'RIFF' + struct.pack('<I', len(body)) + body)
  return str(path)


def test_read_wav_gives_the_int16_values_over_32768(tmp_path):
  x = tone(440, 0.1)
  path = write(tmp_path / 'a.wav', x)
  got = wav.read_wav(path, RATE)
  assert got.dtype == np.float32
  np.testing.assert_array_equal(got, np.round(x.astype(np.float64) * 32767) / 32768)


def test_write_wav_round_trips(tmp_path):
  x = np.array([0.0, 0.5, -0.5, -1.0, 32767 / 32768], np.float32)
  path = str(tmp_path / 'b.wav')
  wav.write_wav(path, x, RATE)
  np.testing.assert_array_equal(wav.read_wav(path, RATE), x)


def _truncated(tmp_path, keep=-101):
  path = write(tmp_path / 't.wav', tone(300, 0.05))
  with open(path, 'rb') as f:
    data = f.read()
  with open(path, 'wb') as f:
    f.write(data[:keep])
  return path


def _bytes(tmp_path, name, data):
  path = str(tmp_path / name)
  with open(path, 'wb') as f:
    f.write(data)
  return path


ERROR_CASES = {
  'missing': (lambda p: str(p / 'nope.wav'), 'no such file'),
  'empty': (lambda p: _bytes(p, 'e.wav', b''), 'empty file (0 bytes)'),
  'not_wav': (lambda p: _bytes(p, 'n.wav', b'hello, not audio' * 4), 'not a RIFF/WAVE file'),
  'header_cut': (lambda p: _truncated(p, keep=30), 'truncated wav header'),
  'no_chunks': (
    lambda p: _bytes(p, 'h.wav', b'RIFF\x04\x00\x00\x00WAVE'),
    'malformed wav (fmt chunk and/or data chunk missing)',
  ),
  'truncated': (_truncated, 'truncated: header says 400 samples, file holds 349'),
  'float': (lambda p: float_wav(p / 'f.wav'), 'not integer PCM'),
  'stereo': (lambda p: write(p / 's.wav', tone(300, 0.01), channels=2), '2 channels'),
  '8bit': (lambda p: write(p / 'b.wav', tone(300, 0.01), width=1), '8-bit samples'),
  'no_samples': (lambda p: write(p / 'z.wav', np.zeros(0)), 'holds no samples'),
  'rate': (
    lambda p: write(p / 'r.wav', tone(300, 0.01, 16000), 16000),
    'sample rate 16000 Hz; expected 8000 Hz',
  ),
}


@pytest.mark.parametrize('case', sorted(ERROR_CASES))
def test_read_wav_errors_name_the_file_and_the_problem(tmp_path, case):
  make, message = ERROR_CASES[case]
  path = make(tmp_path)
  with pytest.raises(DataFileError) as e:
    wav.read_wav(path, RATE)
  assert str(e.value).startswith(f'{path}: ')
  assert message in str(e.value)
  assert '\n' not in str(e.value)


def test_resampling_is_explicit_and_band_limited(tmp_path):
  # 440 whole periods in one second: FFT resampling is exact up to int16 rounding.
  path = write(tmp_path / 'hi.wav', tone(440, 1.0, 16000), 16000)
  got = wav.read_wav(path, RATE, resample=True)
  assert got.shape == (RATE,)
  np.testing.assert_allclose(got, tone(440, 1.0), atol=2e-4)


def test_a_tone_peaks_in_the_mel_band_around_its_frequency():
  cfg = audio.FeatureConfig(kind='logmel', preemphasis=0.0)
  centres = audio.mel_to_hz(
    np.linspace(audio.hz_to_mel(cfg.fmin), audio.hz_to_mel(cfg.top_hz), cfg.num_mels + 2)
  )[1:-1]
  for freq in (250.0, 1000.0, 2500.0):
    feats = audio.compute_features(tone(freq, 0.2), cfg)
    assert feats.shape == (audio.num_frames(1600, 200, 80), 40)
    assert set(feats.argmax(axis=1)) == {int(np.abs(centres - freq).argmin())}


def _direct_features(x, cfg: audio.FeatureConfig) -> np.ndarray:
  """The feature recipe with loops and the textbook formulas, one number at a time."""
  a = cfg.preemphasis
  y = [x[0]] + [x[n] - a * x[n - 1] for n in range(1, len(x))]
  win, hop, nfft = cfg.win_length, cfg.hop_length, cfg.fft_length
  nbins, mels = nfft // 2 + 1, cfg.num_mels

  def mel(f):
    return 2595 * math.log10(1 + f / 700)

  lo_mel, hi_mel = mel(cfg.fmin), mel(cfg.top_hz)
  edges = [
    700 * (10 ** ((lo_mel + i * (hi_mel - lo_mel) / (mels + 1)) / 2595) - 1)
    for i in range(mels + 2)
  ]
  out = []
  for i in range(1 + (len(y) - win) // hop):
    frame = [
      y[i * hop + n] * (0.54 - 0.46 * math.cos(2 * math.pi * n / (win - 1))) for n in range(win)
    ]
    power = []
    for k in range(nbins):
      re = sum(frame[n] * math.cos(2 * math.pi * k * n / nfft) for n in range(win))
      im = -sum(frame[n] * math.sin(2 * math.pi * k * n / nfft) for n in range(win))
      power.append(re * re + im * im)
    logmel = []
    for m in range(mels):
      lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
      energy = 0.0
      for k in range(nbins):
        f = k * cfg.sample_rate / nfft
        if lo < f <= mid:
          energy += power[k] * (f - lo) / (mid - lo)
        elif mid < f < hi:
          energy += power[k] * (hi - f) / (hi - mid)
      logmel.append(math.log(max(energy, cfg.log_floor)))
    ceps = []
    for q in range(cfg.num_ceps):
      scale = math.sqrt((1 if q == 0 else 2) / mels)
      ceps.append(
        scale * sum(logmel[m] * math.cos(math.pi * q * (m + 0.5) / mels) for m in range(mels))
      )
    out.append(ceps if cfg.kind == 'mfcc' else logmel)
  return np.array(out)


def _direct_deltas(c: np.ndarray, big_n: int) -> np.ndarray:
  t_max = len(c) - 1
  out = np.zeros_like(c, np.float64)
  for t in range(len(c)):
    for n in range(1, big_n + 1):
      out[t] += n * (c[min(t + n, t_max)] - c[max(t - n, 0)])
  return out / (2 * sum(n * n for n in range(1, big_n + 1)))


@pytest.mark.parametrize('kind', ['mfcc', 'logmel'])
def test_features_match_a_direct_computation_on_a_tiny_signal(kind):
  # 1 kHz sampling: 16-sample windows, 16-point FFT, 4 filters; 70 samples -> 7 frames.
  cfg = audio.FeatureConfig(
    sample_rate=1000,
    kind=kind,
    window_ms=16,
    hop_ms=8,
    num_mels=4,
    fmin=0,
    num_ceps=3,
    delta_order=2,
    delta_window=1,
  )
  x = np.random.default_rng(0).uniform(-1, 1, 70)
  got = audio.compute_features(x, cfg)
  static = _direct_features(x, cfg)
  d1 = _direct_deltas(static, 1)
  want = np.concatenate([static, d1, _direct_deltas(d1, 1)], axis=1)
  assert got.shape == (7, cfg.dims) == want.shape
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_deltas_of_a_linear_ramp_are_its_slope():
  t = np.arange(9, dtype=np.float64)[:, None]
  ramp = np.concatenate([2.0 * t + 1.0, -0.5 * t], axis=1)
  d = audio.deltas(ramp, window=2)
  # The two frames at each end see repeated edge frames; the rest see the ramp.
  np.testing.assert_allclose(d[2:-2], np.tile([2.0, -0.5], (5, 1)))
  np.testing.assert_allclose(audio.deltas(d[2:-2], window=2), 0.0)


def test_dct_matrix_is_orthonormal():
  d = audio.dct_matrix(6, 6)
  np.testing.assert_allclose(d.T @ d, np.eye(6), atol=1e-12)


def test_a_mel_filter_without_fft_bins_is_an_error():
  with pytest.raises(ValueError, match='holds no FFT bin'):
    audio.compute_features(np.zeros(400), audio.FeatureConfig(num_mels=128))


def test_cmvn_gives_zero_mean_unit_std():
  x = np.random.default_rng(1).normal(3.0, 2.0, (50, 4))
  y = audio.cmvn(x)
  np.testing.assert_allclose(y.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(y.std(axis=0), 1.0, atol=1e-5)
  np.testing.assert_allclose(audio.cmvn(x, variance=False).std(axis=0), x.std(axis=0), rtol=1e-5)


def test_feature_stats_fit_apply_and_json_round_trip():
  rng = np.random.default_rng(2)
  feats = [rng.normal(1.0, 3.0, (n, 3)).astype(np.float32) for n in (4, 9, 2)]
  stats = audio.FeatureStats.fit(feats)
  flat = np.concatenate(feats).astype(np.float64)
  np.testing.assert_allclose(stats.mean, flat.mean(axis=0), rtol=1e-6)
  np.testing.assert_allclose(stats.std, flat.std(axis=0), rtol=1e-6)
  normed = np.concatenate([stats.apply(f) for f in feats])
  np.testing.assert_allclose(normed.mean(axis=0), 0.0, atol=1e-5)
  assert audio.FeatureStats.from_json(stats.to_json()) == stats
  with pytest.raises(ValueError, match='fitted on 3 dims'):
    stats.apply(np.zeros((2, 4)))
  with pytest.raises(ValueError, match='Not a FeatureStats'):
    audio.FeatureStats.from_json('{"mean": [1]}')


def test_cache_hits_on_a_second_call_and_misses_on_any_change(tmp_path, monkeypatch):
  paths = [write(tmp_path / f'{i}.wav', tone(300 + 200 * i, 0.1)) for i in range(3)]
  cache = str(tmp_path / 'cache')
  cfg = audio.FeatureConfig()
  first = feature_cache.load_features(paths, cfg, cache, name='set')
  assert os.listdir(cache) == [os.path.basename(feature_cache.cache_file(paths, cfg, cache, 'set'))]

  real_read = wav.read_wav
  reads = []

  def counting_read(path, *args):
    reads.append(path)
    return real_read(path, *args)

  monkeypatch.setattr(feature_cache, 'read_wav', counting_read)
  again = feature_cache.load_features(paths, cfg, cache, name='set')
  assert reads == []
  for a, b in zip(first, again, strict=True):
    np.testing.assert_array_equal(a, b)

  for changed in (audio.FeatureConfig(hop_ms=12.5), audio.FeatureConfig(delta_order=1)):
    reads.clear()
    feature_cache.load_features(paths, changed, cache, name='set')
    assert reads == paths
  assert len(os.listdir(cache)) == 3  # one file per setting, no temporary files left

  write(paths[1], tone(900, 0.2))  # a new size: the key of every file set holding it changes
  reads.clear()
  feature_cache.load_features(paths, cfg, cache, name='set')
  assert reads == paths
