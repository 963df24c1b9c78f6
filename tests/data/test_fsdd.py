"""bilstm_jax.data.fsdd: names, splits, joined utterances and their frame labels, augmentation."""

import dataclasses
import os

import numpy as np
import pytest

from bilstm_jax.data import audio, fsdd
from bilstm_jax.errors import DataFileError

SPEAKERS = ('ann', 'bob', 'cy')


def fake_recordings(indices=range(5, 15)) -> list[fsdd.Recording]:
  return [
    fsdd.Recording(d, s, i, f'{d}_{s}_{i}.wav')
    for s in SPEAKERS
    for d in range(10)
    for i in indices
  ]


def test_parse_name():
  assert fsdd.parse_name('/x/7_theo_42.wav') == fsdd.Recording(7, 'theo', 42, '/x/7_theo_42.wav')
  for bad in ('12_theo_1.wav', '7_theo.wav', '7_theo_1.mp3', 'x_theo_1.wav', '7__1.wav'):
    with pytest.raises(DataFileError, match=f'{bad}: not an FSDD name'):
      fsdd.parse_name(bad)


def test_list_recordings_sorts_skips_hidden_files_and_names_a_stray_file(tmp_path):
  for name in ('3_bob_5.wav', '0_bob_6.wav', '1_ann_9.wav', '.DS_Store'):
    (tmp_path / name).write_bytes(b'')
  recs = fsdd.list_recordings(str(tmp_path))
  assert [(r.speaker, r.digit, r.index) for r in recs] == [
    ('ann', 1, 9),
    ('bob', 0, 6),
    ('bob', 3, 5),
  ]
  assert recs[0].path == os.path.join(str(tmp_path), '1_ann_9.wav')
  (tmp_path / 'notes.txt').write_text('hi')
  with pytest.raises(DataFileError, match='notes.txt: not an FSDD name'):
    fsdd.list_recordings(str(tmp_path))
  with pytest.raises(DataFileError, match='no such folder'):
    fsdd.list_recordings(str(tmp_path / 'missing'))


def test_dev_split_is_disjoint_complete_and_takes_indices_5_to_9():
  recs = fake_recordings()
  train, dev = fsdd.dev_split(recs)
  assert sorted(train + dev) == sorted(recs)
  assert not set(train) & set(dev)
  assert {r.index for r in dev} == {5, 6, 7, 8, 9}
  assert len(dev) == 5 * 10 * len(SPEAKERS)  # five of every speaker and digit


def test_speaker_split_holds_out_one_speaker():
  recs = fake_recordings()
  train, test = fsdd.speaker_split(recs, 'bob')
  assert sorted(train + test) == sorted(recs)
  assert {r.speaker for r in test} == {'bob'}
  assert 'bob' not in {r.speaker for r in train}
  with pytest.raises(ValueError, match="Unknown speaker 'dan'"):
    fsdd.speaker_split(recs, 'dan')


def tiny_pool() -> fsdd.Pool:
  """Per speaker and digit, two tones of different lengths; each waveform is distinct."""
  recs, waves = [], []
  for s_i, s in enumerate(SPEAKERS):
    for d in range(10):
      for i in range(2):
        n = 400 + 40 * d + 17 * i + 3 * s_i
        t = np.arange(n) / 8000
        recs.append(fsdd.Recording(d, s, i, ''))
        waves.append((0.3 * np.sin(2 * np.pi * (200 + 150 * d + 50 * s_i) * t)).astype(np.float32))
  return fsdd.make_pool(recs, waves)


def test_joined_utterance_pieces_are_one_speakers_recordings_with_gains_and_silences():
  pool = tiny_pool()
  for i in range(10):
    j = fsdd.make_joined(pool, np.random.default_rng(i), silence_dbfs=None)
    assert 2 <= len(j.digits) <= 7
    assert j.segments.shape == (len(j.digits), 2)
    starts, ends = j.segments[:, 0], j.segments[:, 1]
    assert starts[0] >= 400 and len(j.waveform) - ends[-1] >= 400  # >= 50 ms at each end
    assert np.all(starts[1:] - ends[:-1] >= 400) and np.all(starts[1:] - ends[:-1] <= 2400)
    outside = np.ones(len(j.waveform), bool)
    for (a, b), d in zip(j.segments, j.digits, strict=True):
      outside[a:b] = False
      piece = j.waveform[a:b]
      # The piece is one of the speaker's recordings of that digit, times one gain.
      matches = [w for w in pool[j.speaker][int(d)] if len(w) == len(piece) and np.abs(w).max() > 0]
      assert len(matches) == 1
      gain = np.abs(piece).max() / np.abs(matches[0]).max()
      assert 10 ** (-6 / 20) - 1e-3 <= gain <= 10 ** (6 / 20) + 1e-3
      np.testing.assert_allclose(piece, matches[0] * gain, atol=1e-5)
    assert not j.waveform[outside].any()


def test_silences_hold_quiet_noise_by_default():
  j = fsdd.make_joined(tiny_pool(), np.random.default_rng(0))
  gap = j.waveform[: j.segments[0, 0]]
  assert 0.5e-3 < np.sqrt(np.mean(gap.astype(np.float64) ** 2)) < 2e-3  # -60 dBFS


def _direct_labels(j, cfg):
  frames = audio.num_frames(len(j.waveform), cfg.win_length, cfg.hop_length)
  out = []
  for i in range(frames):
    centre = i * cfg.hop_length + cfg.win_length // 2
    label = fsdd.SILENCE
    for (a, b), d in zip(j.segments, j.digits, strict=True):
      if a <= centre < b:
        label = d
    out.append(label)
  return np.array(out)


def test_frame_labels_follow_the_segments_and_match_the_feature_frames():
  cfg = audio.FeatureConfig()
  for j in fsdd.joined_set(tiny_pool(), 4, seed=3):
    labels = fsdd.frame_labels(j.segments, j.digits, len(j.waveform), cfg)
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(labels, _direct_labels(j, cfg))
    assert len(labels) == len(audio.compute_features(j.waveform, cfg))
    # The digits read off the labels, runs merged, silence dropped, are the digits said.
    runs = labels[np.r_[True, labels[1:] != labels[:-1]]]
    np.testing.assert_array_equal(runs[runs != fsdd.SILENCE], j.digits)


def test_joined_set_is_reproducible_from_its_seed():
  pool = tiny_pool()
  a, b = fsdd.joined_set(pool, 3, seed=5), fsdd.joined_set(pool, 5, seed=5)
  for x, y in zip(a, b[:3], strict=True):
    np.testing.assert_array_equal(x.waveform, y.waveform)
    np.testing.assert_array_equal(x.segments, y.segments)
  other = fsdd.joined_set(pool, 3, seed=6)
  assert any(len(x.waveform) != len(y.waveform) for x, y in zip(a, other, strict=True))


AUG = fsdd.Augment(
  max_shift_ms=20, snr_db=(10, 20), time_masks=2, max_time_mask=3, freq_masks=1, max_freq_mask=2
)


def test_augmentation_is_off_by_default():
  x = np.random.default_rng(0).standard_normal(800).astype(np.float32)
  y, shift = fsdd.augment_waveform(x, fsdd.Augment(), 1, 2, 3)
  assert shift == 0
  np.testing.assert_array_equal(y, x)
  f = x.reshape(40, 20)
  np.testing.assert_array_equal(fsdd.spec_augment(f, fsdd.Augment(), 1, 2, 3), f)


def test_augmentation_is_a_function_of_seed_epoch_and_index():
  x = np.random.default_rng(0).standard_normal(800).astype(np.float32)
  f = x.reshape(40, 20)
  base_w = fsdd.augment_waveform(x, AUG, 1, 2, 3)[0]
  base_f = fsdd.spec_augment(f, AUG, 1, 2, 3)
  np.testing.assert_array_equal(fsdd.augment_waveform(x, AUG, 1, 2, 3)[0], base_w)
  np.testing.assert_array_equal(fsdd.spec_augment(f, AUG, 1, 2, 3), base_f)
  for key in ((0, 2, 3), (1, 0, 3), (1, 2, 0)):
    assert not np.array_equal(fsdd.augment_waveform(x, AUG, *key)[0], base_w)


def test_time_shift_moves_the_signal_and_its_segments():
  x = np.arange(1, 801, dtype=np.float32)
  aug = fsdd.Augment(max_shift_ms=10)
  shifts = set()
  for index in range(20):
    y, s = fsdd.augment_waveform(x, aug, 0, 0, index)
    shifts.add(s)
    assert abs(s) <= 80 and len(y) == len(x)
    moved = np.zeros_like(x)
    src = np.arange(len(x)) - s
    ok = (src >= 0) & (src < len(x))
    moved[ok] = x[src[ok]]
    np.testing.assert_array_equal(y, moved)
    segs = fsdd.shift_segments(np.array([[100, 300]]), s, len(x))
    np.testing.assert_array_equal(segs, [[100 + s, 300 + s]])
  assert len(shifts) > 5


def test_noise_is_added_at_the_drawn_snr():
  x = np.sin(np.arange(40000) * 0.1).astype(np.float32)
  aug = fsdd.Augment(snr_db=(10, 10))
  y, _ = fsdd.augment_waveform(x, aug, 0, 0, 0)
  noise = (y - x).astype(np.float64)
  snr = 10 * np.log10(np.mean(x.astype(np.float64) ** 2) / np.mean(noise**2))
  assert abs(snr - 10) < 0.1


def test_spec_augment_masks_bands_and_frames_with_the_mask_value():
  f = np.ones((30, 8), np.float32)
  aug = dataclasses.replace(AUG, max_time_mask=5, max_freq_mask=3, mask_value=-2.0)
  for index in range(10):
    g = fsdd.spec_augment(f, aug, 0, 0, index)
    masked = g == -2.0
    assert set(np.unique(g)) <= {1.0, -2.0}
    full_rows = masked.all(axis=1)
    full_cols = masked.all(axis=0)
    # Every masked cell lies in a fully masked frame or a fully masked band.
    assert np.array_equal(masked, full_rows[:, None] | full_cols[None, :])
    assert full_cols.sum() <= 3 and full_rows.sum() <= 10
