"""The speech tasks' feature and augmentation settings from a config's `data` block."""

from __future__ import annotations

from bilstm_jax.data import fsdd


def feature_settings(data) -> dict:
  """`audio.FeatureConfig` keyword arguments from a config's `data` block."""
  return {
    'sample_rate': fsdd.SAMPLE_RATE,
    'kind': data.get('features', 'mfcc'),
    'window_ms': float(data.get('window_ms', 25.0)),
    'hop_ms': float(data.get('hop_ms', 10.0)),
    'num_mels': int(data.get('num_mels', 40)),
    'num_ceps': int(data.get('num_ceps', 13)),
    'delta_order': int(data.get('delta_order', 2)),
  }


def augment_settings(data) -> dict:
  """`fsdd.Augment` keyword arguments from a config's `data` block (all off by default)."""
  low, high = float(data.get('snr_db_min', 0.0)), float(data.get('snr_db_max', 0.0))
  return {
    'max_shift_ms': float(data.get('shift_ms', 0.0)),
    'snr_db': (low, high) if high > 0 else None,
    'time_masks': int(data.get('time_masks', 0)),
    'max_time_mask': int(data.get('max_time_mask', 0)),
    'freq_masks': int(data.get('freq_masks', 0)),
    'max_freq_mask': int(data.get('max_freq_mask', 0)),
  }
