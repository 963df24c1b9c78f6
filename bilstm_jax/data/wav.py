"""Wav files: reading 16-bit mono PCM with every property checked, writing, resampling.

Plain numpy and the standard library's `wave` module, not soundfile or scipy:
  - install weight: nothing to add. soundfile brings libsndfile (a compiled library per
    platform) for formats the speech data does not use (FLAC, Ogg, 24-bit, float);
    `scipy.io.wavfile` would tie the data readers to scipy, a large import for one header.
  - speed: a 16-bit mono file is one header parse and one `frombuffer` of the data chunk,
    a small part of the time its features take.
  - fidelity: the samples are the file's int16 values divided by 32768, exactly; nothing
    is dithered, converted or resampled behind the caller's back. Every property the
    readers rely on (RIFF/WAVE, integer PCM, mono, 16-bit, the sample rate, a complete data
    chunk) is checked, and a file that fails one raises `DataFileError` naming the file and
    what is wrong.
"""

from __future__ import annotations

import os
import struct
import wave

import numpy as np

from bilstm_jax.errors import DataFileError

# Sample rates a header may plausibly hold; outside them it is damaged, and resampling
# from, say, 1 Hz would allocate thousands of output samples per input sample.
MIN_RATE, MAX_RATE = 1000, 768_000


def read_wav(path: str, sample_rate: int, resample: bool = False) -> np.ndarray:
  """Reads a 16-bit PCM mono wav file as float32 samples in [-1, 1).

  Args:
    path: the .wav file.
    sample_rate: the rate the caller expects, in Hz.
    resample: if True, a file at another rate is resampled to `sample_rate` (see
      `resample`); if False (default) it is an error.

  Returns:
    float32[samples]: the file's int16 values / 32768.

  Raises:
    DataFileError: naming the file, if it is missing, empty, not RIFF/WAVE, not integer
      PCM, not mono, not 16-bit, at another sample rate (unless `resample`), holds no
      samples, or is shorter than its header says (truncated).
  """
  if not os.path.isfile(path):
    raise DataFileError(f'{path}: no such file.')
  if os.path.getsize(path) == 0:
    raise DataFileError(f'{path}: empty file (0 bytes).')
  try:
    with wave.open(path, 'rb') as f:
      channels, width, rate, count = (
        f.getnchannels(),
        f.getsampwidth(),
        f.getframerate(),
        f.getnframes(),
      )
      if channels != 1:
        raise DataFileError(f'{path}: {channels} channels; expected mono.')
      if width != 2:
        raise DataFileError(f'{path}: {8 * width}-bit samples; expected 16-bit PCM.')
      data = f.readframes(count)
  except (EOFError, struct.error) as e:
    raise DataFileError(f'{path}: truncated wav header.') from e
  except RuntimeError as e:  # wave's chunk reader, on a chunk size past the end
    raise DataFileError(f'{path}: malformed wav (a chunk runs past the end of the file).') from e
  except wave.Error as e:
    msg = str(e)
    if msg.startswith('unknown format'):
      # wave reads only WAVE_FORMAT_PCM; float (3), A-law, mu-law, ... land here.
      raise DataFileError(f'{path}: not integer PCM ({msg}).') from e
    if 'RIFF' in msg or 'WAVE' in msg:
      raise DataFileError(f'{path}: not a RIFF/WAVE file ({msg}).') from e
    raise DataFileError(f'{path}: malformed wav ({msg}).') from e
  if count == 0:
    raise DataFileError(f'{path}: holds no samples.')
  if len(data) < 2 * count:
    raise DataFileError(
      f'{path}: truncated: header says {count} samples, file holds {len(data) // 2}.'
    )
  if not MIN_RATE <= rate <= MAX_RATE:
    raise DataFileError(
      f'{path}: sample rate {rate} Hz in the header; expected {sample_rate} Hz (a damaged '
      f'header: plausible rates lie in [{MIN_RATE}, {MAX_RATE}]).'
    )
  x = np.frombuffer(data, '<i2').astype(np.float32) / np.float32(32768.0)
  if rate != sample_rate:
    if not resample:
      raise DataFileError(
        f'{path}: sample rate {rate} Hz; expected {sample_rate} Hz (resampling is off).'
      )
    x = resample_signal(x, rate, sample_rate)
  return x


def write_wav(path: str, samples: np.ndarray, sample_rate: int) -> None:
  """Writes float samples in [-1, 1] as a 16-bit PCM mono wav (clipped, rounded)."""
  pcm = np.clip(np.round(np.asarray(samples, np.float64) * 32768.0), -32768, 32767)
  with wave.open(path, 'wb') as f:
    f.setnchannels(1)
    f.setsampwidth(2)
    f.setframerate(sample_rate)
    f.writeframes(pcm.astype('<i2').tobytes())


def resample_signal(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
  """Band-limited resampling by the FFT: spectrum truncated or zero-padded.

  Treats the signal as periodic (as `scipy.signal.resample` does), so a few samples at
  each end may ring; exact for a signal with a whole number of periods.

  Args:
    x: float[samples] at `rate_in` Hz.
    rate_in: the sample rate of `x`, in Hz.
    rate_out: the sample rate of the result, in Hz.

  Returns:
    float32[round(samples * rate_out / rate_in)].
  """
  n = len(x)
  n_out = int(round(n * rate_out / rate_in))
  if n_out == n:
    return np.asarray(x, np.float32)
  spectrum = np.fft.rfft(np.asarray(x, np.float64))
  keep = min(len(spectrum), n_out // 2 + 1)
  y = np.fft.irfft(spectrum[:keep], n_out) * (n_out / n)
  return y.astype(np.float32)
