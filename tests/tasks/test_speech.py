"""Speech tasks (bilstm_jax.tasks.speech) on generated tone "digits": no ../shared needed.

Digit d is a tone at 400 + 600 d Hz under a Hann envelope, so a tiny model separates the
three digits used here within seconds; what is checked is the wiring (splits, features
and statistics saved and reused, evaluation and prediction reproducing training's
numbers, device decoding against the host decoders), not speech recognition.
"""

import dataclasses
import itertools
import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, readable, tasks
from bilstm_jax.data import audio, frames, fsdd, wav
from bilstm_jax.errors import DataFileError
from bilstm_jax.heads import ctc
from bilstm_jax.tasks import ctc_objective, speech, speech_decode, speech_joined
from configs import fsdd as fsdd_config
from configs import fsdd_ctc as ctc_config
from tests.utils import ROOT, assert_predict_agrees

DIGITS = (0, 1, 2)
SPEAKERS = ('ann', 'bob')
INDICES = (5, 6, 7, 10, 11, 12, 13, 14, 15)  # 5-7 dev, 10-15 train


def tone(digit: int, rng: np.random.Generator) -> np.ndarray:
  n = int(rng.uniform(0.12, 0.25) * fsdd.SAMPLE_RATE)
  t = np.arange(n) / fsdd.SAMPLE_RATE
  f = (400 + 600 * digit) * rng.uniform(0.97, 1.03)
  return 0.3 * np.hanning(n) * np.sin(2 * np.pi * f * t) + 0.003 * rng.standard_normal(n)


def write_tones(path) -> str:
  """Writes the tone recordings of every speaker, digit and index into `path`."""
  rng = np.random.default_rng(0)
  for s in SPEAKERS:
    for d in DIGITS:
      for i in INDICES:
        wav.write_wav(str(path / f'{d}_{s}_{i}.wav'), tone(d, rng), fsdd.SAMPLE_RATE)
  return str(path)


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  return write_tones(tmp_path_factory.mktemp('tones'))


def tiny(module, variant, folder, **overrides):
  cfg = module.get_config(variant)
  cfg.data.folder = folder
  for key, value in overrides.items():
    block, name = key.split('.')
    cfg[block][name] = value
  return cfg


# ------------------------------------------------------------------ data, no training


def test_splits_features_and_saved_stats(folder):
  task = tasks.from_config(tiny(fsdd_config, 'tiny', folder))
  task = task.fit('train')
  train = task.read('train')
  dev = task.read('dev')
  assert len(train['labels']) == 2 * 3 * 6 and len(dev['labels']) == 2 * 3 * 3
  assert train['inputs'].shape[-1] == task.sizes['input_size'] == 13
  # Normalised with the training statistics: mean 0 and std 1 over real training frames.
  real = np.arange(train['inputs'].shape[1])[None, :] < train['lengths'][:, None]
  np.testing.assert_allclose(train['inputs'][real].mean(0), 0, atol=1e-4)
  np.testing.assert_allclose(train['inputs'][real].std(0), 1, atol=1e-3)
  # The spec alone rebuilds the same features, even under a config with other settings.
  other = tasks.from_config(tiny(fsdd_config, 'tiny', folder, **{'data.num_ceps': 7}))
  restored = other.with_spec(json.loads(json.dumps(task.spec())))
  np.testing.assert_array_equal(restored.read('dev')['inputs'], dev['inputs'])
  # A raw dev file, featurised and normalised by hand, is what the task reads.
  path = sorted(r.path for r in task.recordings('dev', True))[0]
  raw = audio.compute_features(wav.read_wav(path, 8000), task.feature_config)
  manual = (raw - np.array(task.stats['mean'])) / np.array(task.stats['std'])
  one = task.read(path)
  np.testing.assert_allclose(one['inputs'][0, : len(raw)], manual, rtol=1e-5, atol=1e-5)
  assert one['labels'].tolist() == [fsdd.parse_name(path).digit]


def test_speaker_disjoint_split(folder):
  task = tasks.from_config(tiny(fsdd_config, 'tiny', folder, **{'data.test_speaker': 'bob'}))
  assert {r.speaker for r in task.recordings('dev', True)} == {'bob'}
  assert {r.speaker for r in task.recordings('train', True)} == {'ann'}
  assert len(task.recordings('dev', True)) == 3 * len(INDICES)


def test_bad_names_and_sources_are_clear_errors(folder, tmp_path):
  task = tasks.from_config(tiny(fsdd_config, 'tiny', folder))
  shutil.copy(os.path.join(folder, '0_ann_5.wav'), tmp_path / 'hello.wav')
  with pytest.raises(DataFileError, match='hello.wav: not an FSDD name'):
    task.recordings(str(tmp_path), labelled=True)
  # Prediction reads any wav name.
  assert [os.path.basename(r.path) for r in task.recordings(str(tmp_path), False)] == ['hello.wav']
  with pytest.raises(DataFileError, match='not .train., .dev., .test., a folder'):
    task.recordings('nothing.npz', labelled=True)


def test_joined_labels_match_their_segments(folder):
  cfg = tiny(ctc_config, 'frames_tiny', folder)
  frames_task = tasks.from_config(cfg).fit('train')
  utts = frames_task.utterances('dev')
  data = frames_task.read('dev')
  fc = frames_task.feature_config
  for i, u in enumerate(utts):
    labels = data['labels'][i, : data['lengths'][i]]
    assert len(labels) == audio.num_frames(len(u.waveform), fc.win_length, fc.hop_length)
    # Collapsing runs of the frame labels and dropping silence gives the digits said.
    runs = labels[np.concatenate([[True], labels[1:] != labels[:-1]])]
    assert runs[runs != fsdd.SILENCE].tolist() == u.digits.tolist()
  ctc_task = tasks.from_config(tiny(ctc_config, 'tiny', folder)).fit('train')
  refs = ctc_task.read('dev')['labels']
  assert [r[r >= 0].tolist() for r in refs] == [u.digits.tolist() for u in utts]
  # The dev set is fixed: another data seed changes training utterances only.
  other = tasks.from_config(tiny(ctc_config, 'tiny', folder, **{'data.seed': 5})).fit('train')
  np.testing.assert_array_equal(other.read('dev')['labels'], refs)
  assert not np.array_equal(other.read('train')['labels'], ctc_task.read('train')['labels'])


def test_frame_stacking():
  x = np.arange(10, dtype=np.float32).reshape(5, 2)
  got = frames.stack_frames(x, 2)
  np.testing.assert_array_equal(got, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 8, 9]])
  assert frames.stack_labels(np.array([1, 1, 2, 3, 3]), 2).tolist() == [1, 3, 3]
  assert frames.stack_labels(np.array([1, 2, 3, 4, 5, 6, 7]), 3).tolist() == [2, 5, 7]


# ------------------------------------------------------- CTC decoding on the device


def test_device_edit_distance_matches_levenshtein():
  rng = np.random.default_rng(1)
  batch, time, width = 16, 9, 4
  path = rng.integers(0, 4, (batch, time)).astype(np.int32)
  emit = rng.random((batch, time)) < 0.5
  ref_lengths = rng.integers(0, width + 1, batch).astype(np.int32)
  refs = np.where(np.arange(width) < ref_lengths[:, None], rng.integers(0, 4, (batch, width)), -1)
  got = jax.jit(ctc_objective.edit_distances)(emit, path, refs.astype(np.int32), ref_lengths)
  want = [
    speech_decode.levenshtein(p[e].tolist(), r[:n].tolist())
    for p, e, r, n in zip(path, emit, refs, ref_lengths, strict=True)
  ]
  assert np.asarray(got).tolist() == want


@pytest.mark.slow
def test_device_greedy_predictions_match_host_decoder():
  rng = np.random.default_rng(2)
  task = dataclasses.replace(
    speech_joined.DigitCTCTask(features=speech.feature_settings({})), max_tokens=12
  )
  # Peaky random posteriors: mostly blank, so runs, repeats and gaps all occur.
  logits = rng.normal(size=(4, 15, 11)).astype(np.float32)
  logits[..., speech.BLANK] += 1.0
  lengths = np.array([15, 9, 1, 0], np.int32)
  pred = jax.jit(task.predictions)(jnp.asarray(logits), {'lengths': jnp.asarray(lengths)})
  host = ctc.greedy_decode(logits, lengths)
  rows = speech_decode.spans_to_rows(host, task)
  for i, (tokens, _) in enumerate(host):
    k = len(tokens)
    assert int(pred['num_digits'][i]) == k
    assert np.asarray(pred['digits'][i, :k]).tolist() == tokens.tolist()
    assert (np.asarray(pred['digits'][i, k:]) == -1).all()
    starts = [d['start_s'] for d in rows[i]['digits']]
    ends = [d['end_s'] for d in rows[i]['digits']]
    np.testing.assert_allclose(pred['start_s'][i, :k], starts, atol=1e-4)
    np.testing.assert_allclose(pred['end_s'][i, :k], ends, atol=1e-4)


# --------------------------------------------------------------- tiny training runs


@pytest.mark.slow
def test_classifier_learns_evaluates_and_predicts(folder, tmp_path):
  workdir = str(tmp_path / 'run')
  summary = app.train_and_evaluate(tiny(fsdd_config, 'tiny', folder), workdir)
  assert summary['final_dev_accuracy'] >= 0.8  # chance is 1/3
  trained = bilstm_jax.load(workdir)
  assert trained.task.stats is not None
  np.testing.assert_allclose(
    trained.evaluate('dev')['accuracy'], summary['final_dev_accuracy'], rtol=1e-6
  )
  # --config.data.test=DIR: a folder of FSDD-named files, scored without retraining.
  test_dir = tmp_path / 'test'
  test_dir.mkdir()
  dev_files = [r.path for r in trained.task.recordings('dev', True)]
  for p in dev_files:
    shutil.copy(p, test_dir)
  np.testing.assert_allclose(
    trained.evaluate(str(test_dir))['accuracy'], summary['final_dev_accuracy'], rtol=1e-6
  )
  # Prediction on unlabelled wavs (sorted by name) and on feature arrays agree.
  preds = trained.predict_arrays(str(test_dir))
  names = sorted(os.listdir(test_dir))
  digits = np.array([fsdd.parse_name(n).digit for n in names])
  assert (preds['label'] == digits).mean() >= 0.8
  dataset = trained.task.read(str(test_dir), labelled=False)
  again = trained.predict_arrays({'inputs': dataset['inputs'], 'lengths': dataset['lengths']})
  np.testing.assert_array_equal(again['label'], preds['label'])
  waves = [wav.read_wav(str(test_dir / n), fsdd.SAMPLE_RATE) for n in names]
  from_waves = trained.predict_arrays(speech.waveform_dataset(trained.task, waves))
  np.testing.assert_array_equal(from_waves['label'], preds['label'])
  # Records name each file with its digit; --mode=predict writes the same ones.
  rows = assert_predict_agrees(workdir, str(test_dir), tmp_path / 'digits.jsonl')
  assert [os.path.basename(r['file']) for r in rows] == names
  assert [r['digit'] for r in rows] == preds['label'].tolist()
  assert rows[0]['probability'] == max(rows[0]['probabilities'].values())
  assert [r['digit'] for r in trained.predict(waves)] == preds['label'].tolist()  # waveforms
  assert speech_decode.predict_wavs(trained, str(test_dir)) == rows


@pytest.mark.slow
def test_ctc_learns_and_host_decoding_agrees(folder, tmp_path):
  workdir = str(tmp_path / 'ctc')
  summary = app.train_and_evaluate(tiny(ctc_config, 'tiny', folder), workdir)
  first, last = summary['history'][0], summary['history'][-1]
  assert last['dev_loss'] < first['dev_loss']
  trained = bilstm_jax.load(workdir)
  result = speech_decode.decode_eval(trained, 'dev', beam_width=4)
  # The device metric and the host's greedy decoder count the same errors.
  np.testing.assert_allclose(result['der_greedy'], summary['final_dev_der'], rtol=1e-6)
  assert result['der_beam'] >= 0 and result['num_utterances'] == 8
  rows = speech_decode.transcribe(trained, 'dev')
  preds = trained.predict_arrays('dev')
  for i, row in enumerate(rows):
    k = int(preds['num_digits'][i])
    assert row['transcript'] == ''.join(str(d) for d in preds['digits'][i, :k])
  # The records of a split (no file per utterance) are the host decoder's greedy rows.
  records = trained.predict('dev')
  assert [r['transcript'] for r in records] == [r['transcript'] for r in rows]
  for record, row in zip(records, rows, strict=True):
    ours = [(d['start_s'], d['end_s']) for d in record['digits']]
    np.testing.assert_allclose(ours, [(d['start_s'], d['end_s']) for d in row['digits']], atol=2e-4)
  # Wav files of joined utterances, transcribed with file names and timings.
  wavs = tmp_path / 'wavs'
  wavs.mkdir()
  for i, u in enumerate(trained.task.utterances('dev')[:2]):
    wav.write_wav(str(wavs / f'utt{i}.wav'), u.waveform, fsdd.SAMPLE_RATE)
  greedy = assert_predict_agrees(workdir, str(wavs), tmp_path / 'greedy.jsonl')
  out = str(tmp_path / 'out.jsonl')
  with pytest.warns(DeprecationWarning):  # beam search through the old command
    readable.main(['--workdir', workdir, '--input', str(wavs), '--beam_width=3', '--output', out])
  with open(out) as f:
    lines = [json.loads(line) for line in f]
  for found in (greedy, lines):
    assert [os.path.basename(r['file']) for r in found] == ['utt0.wav', 'utt1.wav']
    for r in found:
      assert r['transcript'] == ''.join(str(d['digit']) for d in r['digits'])
      assert all(0 <= d['start_s'] < d['end_s'] for d in r['digits'])


@pytest.mark.slow
def test_framewise_learns_above_silence_baseline(folder, tmp_path):
  workdir = str(tmp_path / 'frames')
  summary = app.train_and_evaluate(tiny(ctc_config, 'frames_tiny', folder), workdir)
  dev = tasks.from_config(tiny(ctc_config, 'frames_tiny', folder)).fit('train').read('dev')
  real = np.arange(dev['labels'].shape[1])[None, :] < dev['lengths'][:, None]
  silence = (dev['labels'][real] == fsdd.SILENCE).mean()
  assert summary['final_dev_accuracy'] > max(silence, 1 - silence) + 0.05
  # Records: the runs of digit frames as a transcript with times, and every frame.
  records = assert_predict_agrees(workdir, 'dev', tmp_path / 'frames.jsonl')
  tags = bilstm_jax.load(workdir).predict_arrays('dev')['labels']
  for record, row, n in zip(records, tags, dev['lengths'], strict=True):
    assert record['frames'] == ''.join('_' if t == fsdd.SILENCE else str(t) for t in row[:n])
    runs = [k for k, _ in itertools.groupby(record['frames']) if k != '_']
    digits = record['digits']
    assert record['transcript'] == ''.join(runs) == ''.join(str(d['digit']) for d in digits)
    starts = [d['start_s'] for d in digits]
    assert starts == sorted(starts) and all(d['start_s'] < d['end_s'] for d in digits)


@pytest.mark.slow
@pytest.mark.subprocess
def test_cli_evaluate_and_predict_on_a_folder(folder, tmp_path):
  workdir = str(tmp_path / 'cli')
  cfg = tiny(fsdd_config, 'tiny', folder, **{'train.epochs': 2})
  app.train_and_evaluate(cfg, workdir)
  test_dir = tmp_path / 'test'
  test_dir.mkdir()
  for name in ('1_ann_5.wav', '2_bob_6.wav'):
    shutil.copy(os.path.join(folder, name), test_dir)
  base = [sys.executable, 'train.py', '--workdir', workdir]
  run = dict(cwd=ROOT, capture_output=True, text=True, timeout=300)
  out = subprocess.run(base + ['--mode=evaluate', f'--config.data.test={test_dir}'], **run)
  assert out.returncode == 0, out.stderr[-2000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['data'] == str(test_dir) and 0 <= result['accuracy'] <= 1
  output = str(tmp_path / 'digits.jsonl')
  out = subprocess.run(
    base + ['--mode=predict', f'--input={test_dir}', f'--output={output}'], **run
  )
  assert out.returncode == 0, out.stderr[-2000:]
  with open(output) as f:
    rows = [json.loads(line) for line in f]
  assert [os.path.basename(r['file']) for r in rows] == ['1_ann_5.wav', '2_bob_6.wav']
  assert all(0 <= r['digit'] < 10 for r in rows)
  assert rows == bilstm_jax.load(workdir).predict(str(test_dir))
