"""Pretrained word vectors in the text tasks: lookup beyond the training words, a workdir
that no longer needs the vector file, frozen and fine-tuned vectors, and the test-score log.

The vector files are small and generated here; the 68 MB GloVe file is never read.
"""

import gzip
import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, errors
from bilstm_jax.data import word_vectors
from configs import pos_ud, sst2
from tests.tasks import text_fixtures

DIM = 8
UNSEEN = 'giraffe'  # in the vector file, never in a generated training sentence


@pytest.fixture(scope='module')
def corpora(tmp_path_factory):
  return text_fixtures.write_all(str(tmp_path_factory.mktemp('text')))


def _vector_words() -> list[str]:
  lists = (
    text_fixtures.DET,
    text_fixtures.ADJ,
    text_fixtures.NOUN,
    text_fixtures.VERB,
    text_fixtures.BOTH,
    text_fixtures.PER,
    text_fixtures.LOC,
  )
  words = sorted({w.lower() for group in lists for w in group} | {UNSEEN, '.'})
  # More rows than any vocabulary here, so a checkpoint holding the table would show it.
  return words + [f'filler{i}' for i in range(600)]


def _write_vectors(path, seed=0) -> str:
  rng = np.random.default_rng(seed)
  lines = [w + ' ' + ' '.join(f'{v:.5f}' for v in rng.normal(size=DIM)) for w in _vector_words()]
  with gzip.open(path, 'wt', encoding='utf-8') as f:
    f.write('\n'.join(lines) + '\n')
  return str(path)


def _config(module, train, dev, vectors, trainable=False, variant='tiny'):
  cfg = module.get_config(variant)
  cfg.data.train, cfg.data.dev = str(train), str(dev)
  cfg.data.test_file = ''
  cfg.model.word_vectors = vectors
  cfg.model.word_vectors_trainable = trainable
  cfg.train.epochs = 2
  return cfg


def _leaves(params) -> list:
  return jax.tree.leaves(params)


@pytest.fixture(scope='module')
def vectors_file(tmp_path_factory) -> str:
  return _write_vectors(tmp_path_factory.mktemp('vectors') / 'vec.txt.gz')


@pytest.fixture(scope='module')
def runs(corpora, vectors_file, tmp_path_factory) -> dict:
  """{'frozen', 'tuned'}: tiny taggers trained with the vectors (the file then deleted)."""
  root = tmp_path_factory.mktemp('runs')
  table = word_vectors.read(vectors_file)
  out = {'table': table}
  for name, trainable in (('frozen', False), ('tuned', True)):
    workdir = str(root / name)
    cfg = _config(pos_ud, corpora['pos_train'], corpora['pos_dev'], vectors_file, trainable)
    app.train_and_evaluate(cfg, workdir)
    out[name] = workdir
  os.remove(vectors_file)
  return out


def test_unseen_word_is_scored_with_its_vector_after_the_file_is_deleted(runs, tmp_path):
  table, workdir = runs['table'], runs['frozen']
  trained = bilstm_jax.load(workdir)
  sentence = [['the', UNSEEN.capitalize(), 'sees', '.']]  # found through its lowercase form
  encoded = trained.task.encode(sentence)
  unk = trained.task.vocabs['words'].unk_id
  assert encoded['inputs'][0, 1] == unk  # not a training word...
  row = table.lookup([UNSEEN])[0]
  np.testing.assert_array_equal(encoded['vectors'][0, 1], table.vectors[row])  # ...but scored
  encoded['lengths'] = np.array([4], np.int32)
  with_vector = trained.predict_encoded(encoded)['confidence'][0, 1]
  without = dict(encoded, vectors=np.zeros_like(encoded['vectors']))
  assert trained.predict_encoded(without)['confidence'][0, 1] != with_vector

  # The training words' vectors come from the workdir's copy too, at evaluate and predict.
  result = app.evaluate(trained.config, workdir)
  assert 0.0 <= result['accuracy'] <= 1.0
  raw = tmp_path / 'in.txt'
  raw.write_text('the Giraffe sees .\n')
  out = app.predict(trained.config, workdir, str(raw), str(tmp_path / 'out.jsonl'))
  assert os.path.getsize(out) > 0


@pytest.mark.parametrize('name', ['frozen', 'tuned'])
def test_frozen_vectors_stay_bit_identical_and_fine_tuned_ones_move(runs, name):
  table, workdir = runs['table'], runs[name]
  saved = word_vectors.WordVectors.load(os.path.join(workdir, 'word_vectors.npz'))
  assert saved.words == table.words
  assert saved.vectors.tobytes() == table.vectors.tobytes()
  assert saved.fingerprint() == table.fingerprint()

  trained = bilstm_jax.load(workdir)
  encoder = trained.state.params['encoder']
  assert encoder['embed']['embedding'].shape[1] == DIM  # embed_size is the vectors' size
  if name == 'tuned':
    offset = np.asarray(encoder['offset']['embedding'])
    assert np.abs(offset).max() > 0  # started at zero, trained
  else:
    assert 'offset' not in encoder
  # No checkpointed array holds the vector table (it has more rows than any vocabulary).
  assert max(leaf.shape[0] for leaf in _leaves(trained.state.params) if leaf.ndim) < len(table)


def test_changed_vector_copy_in_the_workdir_is_refused(runs, tmp_path):
  workdir = str(tmp_path / 'copy')
  shutil.copytree(runs['frozen'], workdir)
  word_vectors.read(_write_vectors(tmp_path / 'other.txt.gz', seed=5)).save(
    os.path.join(workdir, 'word_vectors.npz')
  )
  with pytest.raises(errors.CheckpointError, match='word_vectors.npz is not the vector table'):
    bilstm_jax.load(workdir)


def test_classifier_ensemble_with_vectors_trains_and_loads(corpora, tmp_path):
  vectors = _write_vectors(tmp_path / 'vec.txt.gz', seed=2)
  workdir = str(tmp_path / 'ens')
  cfg = _config(
    sst2, corpora['cls_train'], corpora['cls_dev'], vectors, True, variant='tiny_ensemble'
  )
  cfg.ensemble.num_members = 2
  summary = app.train_and_evaluate(cfg, workdir)
  os.remove(vectors)
  result = app.evaluate(bilstm_jax.load(workdir).config, workdir)
  assert result['accuracy'] == pytest.approx(summary['ensemble_dev_accuracy'], abs=1e-6)


def test_every_scoring_of_the_test_file_is_logged(runs, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(runs['tuned'], workdir)
  test_file = text_fixtures.write_conllu(str(tmp_path / 'test.conllu'), 30, 9)
  log = os.path.join(workdir, app.TEST_SCORES)

  def evaluate(data, test_file=test_file):
    c = bilstm_jax.load(workdir).config
    c.data.test, c.data.test_file = data, test_file
    return app.evaluate(c, workdir)

  evaluate('dev')
  assert not os.path.exists(log)  # dev scorings are not test scorings
  first = evaluate('test')
  second = evaluate(os.path.relpath(test_file))  # the same file by another name
  lines = [json.loads(x) for x in Path(log).read_text().splitlines()]
  assert len(lines) == 2
  for line, result in zip(lines, (first, second), strict=True):
    assert line['accuracy'] == result['accuracy'] and line['checkpoint'] == result['checkpoint']
    assert set(line) >= {'time', 'commit', 'command', 'data', 'step', 'loss'}
  evaluate('dev', test_file='')
  assert len(Path(log).read_text().splitlines()) == 2


def test_a_classifier_with_vectors_and_no_characters_exports(tmp_path):
  """Its model inputs hold None where the character ids would be (an export once failed)."""
  from bilstm_jax.models.text import TextClassifier, TextEncoder
  from bilstm_jax.tasks import text_classification
  from bilstm_jax.training import export

  encoder = TextEncoder(vocab_size=9, hidden_size=4, embed_size=DIM, vectors_dim=DIM)
  model = TextClassifier(encoder, num_classes=2)
  words = np.array([[2, 3, 1, 0]], np.int32)
  lengths = np.array([3], np.int32)
  vectors = np.random.default_rng(0).normal(size=(1, 4, DIM)).astype(np.float16)
  variables = model.init(jax.random.key(0), words, lengths, None, vectors)
  sizes = {'vocab_size': 9, 'num_classes': 2, 'vectors_dim': DIM}
  task = text_classification.TextClassificationTask(chars='', sizes=sizes)
  export.export_predict(model, variables, task, str(tmp_path))
  got = export.load(str(tmp_path))(words, lengths, vectors)
  want = model.apply(variables, words, lengths, None, vectors)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
