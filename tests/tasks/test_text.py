"""Text tasks from raw files: generated CoNLL-U, CoNLL (IOB1) and TSV corpora, end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, errors, readable
from bilstm_jax.data import tag_schemes, vocab
from bilstm_jax.ensembles import hparams
from bilstm_jax.heads import crf as crf_lib
from bilstm_jax.tasks import span_metrics
from bilstm_jax.tasks.text_tagging import TextTaggingTask
from configs import ner_conll2003, ner_wnut17, pos_ud, sst2
from tests.tasks import text_fixtures
from tests.utils import ROOT, assert_predict_agrees, each_member_alone

TAGS = ['O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC', 'E-PER', 'S-LOC', 'B-creative-work']


def _config(module, train, dev, **overrides):
  cfg = module.get_config('tiny')
  cfg.data.train, cfg.data.dev = str(train), str(dev)
  for key, value in overrides.items():
    block, name = key.split('.')
    cfg[block][name] = value
  return cfg


@pytest.fixture(scope='module')
def corpora(tmp_path_factory):
  return text_fixtures.write_all(str(tmp_path_factory.mktemp('text')))


# ----------------------------------------------------------------- span F1 on device


def test_span_sums_equal_conlleval_on_random_tag_sequences():
  rng = np.random.default_rng(0)
  lengths = rng.integers(0, 9, 64).astype(np.int32)
  gold = rng.integers(0, len(TAGS), (64, 9)).astype(np.int32)
  pred = np.where(rng.random((64, 9)) < 0.7, gold, rng.integers(0, len(TAGS), (64, 9)))
  pred = np.where(np.arange(9)[None] < lengths[:, None], pred, -1).astype(np.int32)
  sums = span_metrics.span_sums(gold, pred, lengths, *span_metrics.scheme_tables(TAGS))
  names = [
    [[TAGS[t] for t in row[:n]] for row, n in zip(x, lengths, strict=True)] for x in (gold, pred)
  ]
  want = tag_schemes.span_scores(*names)
  got = {k: float(s) / max(float(c), 1.0) for k, (s, c) in sums.items()}
  assert want.total.gold > 20 and want.total.correct > 10
  np.testing.assert_allclose(got['precision'], want.precision, atol=1e-6)
  np.testing.assert_allclose(got['recall'], want.recall, atol=1e-6)
  np.testing.assert_allclose(got['f1'], want.f1, atol=1e-6)
  # The sums themselves are the counts, as float32 (ratios of sums across batches).
  total = want.total
  assert [float(x) for x in sums['precision']] == [total.correct, total.predicted]
  assert [float(x) for x in sums['recall']] == [total.correct, total.gold]
  assert [float(x) for x in sums['f1']] == [2 * total.correct, total.gold + total.predicted]
  assert all(x.dtype == jnp.float32 for pair in sums.values() for x in pair)


def test_span_sums_hand_cases_iob1_stray_and_adjacent():
  tags = ['O', 'I-PER', 'I-PER', 'B-PER', 'O', 'I-LOC', 'I-PER']
  ids = np.array([[TAGS.index(t) for t in tags]], np.int32)
  starts, kinds, stop = span_metrics.span_marks(
    ids, np.array([7]), *span_metrics.scheme_tables(TAGS)
  )
  got = [(i, int(stop[0, i]) + 1) for i in np.flatnonzero(starts[0])]
  want = [(s, e) for _, s, e in tag_schemes.spans(tags)]
  assert got == want == [(1, 3), (3, 4), (5, 6), (6, 7)]
  assert kinds[0, 5] != kinds[0, 6]


# -------------------------------------------------------------------- reading


def test_read_builds_vocabularies_from_training_and_encodes_chars(corpora):
  task = TextTaggingTask.from_config(_config(pos_ud, corpora['pos_train'], corpora['pos_dev']))
  task = task.fit('train')
  train = task.read('train')
  words, chars = task.vocabs['words'], task.vocabs['chars']
  assert words.lowercase and not chars.lowercase and 'C' in chars  # 'Cat' keeps its case
  assert train['inputs'].dtype == np.int32 and train['chars'].ndim == 3
  assert train['labels'].shape == train['inputs'].shape
  first = int(train['lengths'][0])
  assert (train['inputs'][0, first:] == 0).all() and (train['inputs'][0, :first] > 1).all()
  assert sorted(task.label_names()) == ['ADJ', 'DET', 'NOUN', 'PUNCT', 'VERB']
  # Multiword-token ranges are skipped: every sentence is words only.
  assert int(train['lengths'].sum()) == int((train['inputs'] > 0).sum())


def test_iob1_is_converted_to_bio_for_the_crf(corpora):
  cfg = _config(ner_conll2003, corpora['ner_train'], corpora['ner_dev'])
  task = TextTaggingTask.from_config(cfg)
  task = task.fit('train')
  names = task.label_names()
  assert 'B-LOC' in names and 'I-LOC' in names and task.metrics[-1] == 'f1'
  allowed = task._allowed()
  assert 'I-PER' not in names  # IOB1 'I-PER' names are single words: B-PER in BIO
  assert not allowed.transitions[names.index('O'), names.index('I-LOC')]
  assert not allowed.transitions[names.index('B-PER'), names.index('I-LOC')]
  assert allowed.transitions[names.index('B-LOC'), names.index('I-LOC')]
  assert not allowed.start[names.index('I-LOC')]


def test_raw_text_is_read_for_prediction_only(corpora, tmp_path):
  task = TextTaggingTask.from_config(_config(pos_ud, corpora['pos_train'], corpora['pos_dev']))
  task = task.fit('train')
  raw = tmp_path / 'in.txt'
  raw.write_text('the zebra sees a cat .\n\nA dog\n')
  data = task.read(str(raw), labelled=False)
  assert data['lengths'].tolist() == [6, 0, 2] and 'labels' not in data
  assert data['inputs'][0, 1] == 1  # 'zebra' is unknown


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope='module')
def pos_run(corpora, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('pos') / 'run')
  cfg = _config(pos_ud, corpora['pos_train'], corpora['pos_dev'], **{'model.norm': 'layer'})
  return workdir, app.train_and_evaluate(cfg, workdir)


@pytest.mark.slow
def test_pos_tagger_learns_and_reloads_exactly(pos_run, corpora, tmp_path):
  workdir, summary = pos_run
  # 5 tags, and 'walk'/'fish' need the word before: chance is far below this.
  assert summary['final_dev_accuracy'] > 0.97, summary['final_dev_accuracy']
  spec = json.loads((Path(workdir) / 'task.json').read_text())
  assert set(spec['vocabularies']) == {'words', 'chars', 'labels'}
  trained = bilstm_jax.load(workdir)
  dev = trained.evaluate('dev')
  np.testing.assert_allclose(dev['accuracy'], summary['final_dev_accuracy'], rtol=1e-6)
  again = trained.evaluate(corpora['pos_dev'])
  assert again == dev
  raw = tmp_path / 'in.txt'
  # In the generated corpus 'walk' after a determiner and before a verb is a noun, and
  # 'fish' after a noun a verb (the word before '.' is always a verb there).
  raw.write_text('the dog sees a walk moves .\nA big cat fish\n')
  rows = assert_predict_agrees(workdir, str(raw), tmp_path / 'tags.jsonl')
  assert len(rows) == 2
  assert rows[0]['tags'] == ['DET', 'NOUN', 'VERB', 'DET', 'NOUN', 'VERB', 'PUNCT']
  assert rows[1]['tokens'] == ['A', 'big', 'cat', 'fish'] and rows[1]['tags'][-1] == 'VERB'
  assert all(0.2 < c <= 1.0 for row in rows for c in row['confidence'])
  # Token lists or strings in memory, and a CoNLL file of the task's own format.
  assert trained.predict([['the', 'dog', 'sees', 'a', 'walk', 'moves', '.'], 'A big cat fish'])
  assert trained.predict(corpora['pos_dev'])[0]['tokens'] == trained.predict('dev')[0]['tokens']
  columns = tmp_path / 'tags.conll'
  app.predict(None, workdir, str(raw), str(columns))
  blocks = columns.read_text().split('\n\n')
  assert blocks[0].splitlines()[1] == 'dog\tNOUN' and blocks[1].splitlines()[-1] == 'fish\tVERB'
  assert columns.read_text().endswith('fish\tVERB\n\n')
  # The old command and function are aliases of the same records, with a warning.
  out = tmp_path / 'old.jsonl'
  with pytest.warns(DeprecationWarning, match='--mode=predict'):
    readable.main(['--workdir', workdir, '--input', str(raw), '--output', str(out)])
  assert [json.loads(x) for x in out.read_text().splitlines()] == rows
  with pytest.warns(DeprecationWarning):
    alias = bilstm_jax.predict_sentences(workdir, [rows[1]['tokens']])
  assert alias == trained.predict([rows[1]['tokens']])


@pytest.mark.slow
def test_a_changed_vocabulary_is_an_error(pos_run, corpora, tmp_path):
  workdir, _ = pos_run
  spec_path = os.path.join(workdir, 'task.json')
  with open(spec_path) as f:
    spec = json.load(f)
  # Resuming after the training file changed: its vocabulary differs from the checkpoints'.
  train = corpora['pos_train']
  saved = Path(train).read_text()
  try:
    text_fixtures.write_conllu(train, 50, 9)
    later = os.path.getmtime(train) + 10
    os.utime(train, (later, later))  # a new mtime: the file is read again, not from cache
    cfg = _config(pos_ud, train, corpora['pos_dev'], **{'model.norm': 'layer'})
    with pytest.raises(errors.RunError, match='vocabulary changed'):
      app.train_and_evaluate(cfg, workdir)
  finally:
    Path(train).write_text(saved)
    os.utime(train, (later + 10, later + 10))
  # A task.json whose word list was edited no longer matches its fingerprint.
  bad = dict(spec, vocabularies=dict(spec['vocabularies']))
  words = json.loads(bad['vocabularies']['words'])
  words['tokens'][2], words['tokens'][3] = words['tokens'][3], words['tokens'][2]
  bad['vocabularies']['words'] = json.dumps(words)
  try:
    with open(spec_path, 'w') as f:
      json.dump(bad, f)
    with pytest.raises(errors.CheckpointError, match='fingerprint'):
      bilstm_jax.load(workdir)
  finally:
    with open(spec_path, 'w') as f:
      json.dump(spec, f)


@pytest.mark.slow
def test_ner_crf_learns_spans_ranked_by_dev_f1(corpora, tmp_path):
  cfg = _config(ner_conll2003, corpora['ner_train'], corpora['ner_dev'])
  summary = app.train_and_evaluate(cfg, str(tmp_path / 'crf'))
  assert cfg.train.metric == 'dev_f1' and cfg.model.crf
  assert summary['final_dev_f1'] > 0.9, summary['final_dev_f1']
  trained = bilstm_jax.load(str(tmp_path / 'crf'))
  np.testing.assert_allclose(trained.evaluate('dev')['f1'], summary['final_dev_f1'], rtol=1e-6)
  # The device F1 is conlleval's: score the predicted tags on the host.
  rows = trained.predict([['we', 'met', 'Bob', 'Alice', 'in', 'Oslo']])
  assert rows[0]['tags'][2:4] == ['B-PER', 'B-PER']
  np.testing.assert_allclose(np.sum(rows[0]['confidence']) > 3.0, True)


def test_crf_confidence_is_a_marginal_probability():
  task = TextTaggingTask(crf=True, vocabs={'labels': None})
  rng = np.random.default_rng(0)
  outputs = {
    'emissions': jnp.asarray(rng.normal(size=(2, 4, 3)), jnp.float32),
    'transitions': jnp.asarray(rng.normal(size=(3, 3)), jnp.float32),
    'start': jnp.zeros(3),
    'end': jnp.zeros(3),
  }
  lengths = jnp.array([4, 2])
  tags, conf = task.objective.decode(outputs, lengths)
  scores = (outputs['transitions'], outputs['start'], outputs['end'])
  marg = jax.grad(lambda e: crf_lib.crf_log_partition(e, lengths, *scores).sum())(
    outputs['emissions']
  )
  np.testing.assert_allclose(marg[0].sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(marg[1, :2].sum(-1), 1.0, rtol=1e-5)
  assert tags[1, 2:].tolist() == [-1, -1] and (conf[0] > 0).all() and (conf[0] <= 1).all()


@pytest.mark.slow
def test_sentence_classifier_learns_from_tsv(corpora, tmp_path):
  # Two layers with batch norm between them: reloading must bring back its statistics.
  overrides = {'model.num_layers': 2, 'model.norm': 'batch'}
  cfg = _config(sst2, corpora['cls_train'], corpora['cls_dev'], **overrides)
  summary = app.train_and_evaluate(cfg, str(tmp_path / 'cls'))
  assert summary['final_dev_accuracy'] > 0.8, summary['final_dev_accuracy']  # chance ~0.5
  trained = bilstm_jax.load(str(tmp_path / 'cls'))
  stats = trained.state.model_state['batch_stats']['encoder']['norm_0']
  assert np.any(np.asarray(stats['mean']) != 0) and np.any(np.asarray(stats['var']) != 1)
  dev = trained.evaluate('dev')
  np.testing.assert_allclose(dev['accuracy'], summary['final_dev_accuracy'], rtol=1e-6)
  rows = trained.predict([['very', 'good', 'movie'], ''])
  assert rows[0]['label'] == '1' and rows[1]['label'] is None
  assert rows[0]['text'] == 'very good movie' and set(rows[0]['probabilities']) == {'0', '1'}
  assert rows[0]['probability'] == max(rows[0]['probabilities'].values())
  records = assert_predict_agrees(tmp_path / 'cls', 'dev', tmp_path / 'labels.jsonl')
  assert len(records) == len(trained.task.read('dev')['lengths'])
  # The deprecated alias loads the run from its path and gives the same records.
  with pytest.warns(DeprecationWarning, match='predict_sentences'):
    assert bilstm_jax.predict_sentences(str(tmp_path / 'cls'), [['very', 'good', 'movie']]) == [
      rows[0]
    ]


def test_every_text_config_has_the_default_keys_and_a_tiny_variant():
  from configs import default

  def flat(d, pre=''):
    out = set()
    for k, v in d.items():
      out |= flat(v, f'{pre}{k}.') if isinstance(v, dict) else {pre + k}
    return out

  keys = flat(default.get_config().to_dict())
  for module in (pos_ud, ner_conll2003, ner_wnut17, sst2):
    for variant in ('', 'tiny', 'ensemble', 'tiny_ensemble'):
      cfg = module.get_config(variant)
      assert keys <= flat(cfg.to_dict()) and cfg.data.task.startswith('text_')
      assert ('ensemble' in cfg) == variant.endswith('ensemble')
    with pytest.raises(ValueError):
      module.get_config('huge')
  # An ensemble variant is its base config with seed-only members: same rate and dropout,
  # read from the config when the run starts (the ranges are unset).
  tiny, members = sst2.get_config('tiny'), sst2.get_config('tiny_ensemble')
  assert members.ensemble.learning_rate is None and members.ensemble.dropout is None
  ranges = hparams.member_ranges(members)
  assert ranges['learning_rate'] == (tiny.optim.learning_rate,) * 2
  assert ranges['dropout'] == (tiny.model.dropout,) * 2
  assert members.train.metric == 'ensemble_' + tiny.train.metric


@pytest.mark.slow
@pytest.mark.parametrize('data_mode', ['shared', 'shuffled'])
def test_a_classifier_ensemble_averages_its_members_probabilities(corpora, tmp_path, data_mode):
  """Both data modes that work with length buckets (the tiny config has two)."""
  cfg = sst2.get_config('tiny_ensemble')
  cfg.data.train, cfg.data.dev = corpora['cls_train'], corpora['cls_dev']
  cfg.ensemble.num_members = 3
  cfg.ensemble.data_mode = data_mode
  cfg.train.epochs = 2
  workdir = str(tmp_path / 'ens')
  summary = app.train_and_evaluate(cfg, workdir)
  assert summary['data_mode'] == data_mode
  trained = bilstm_jax.load(workdir)
  dev = trained.evaluate('dev')
  np.testing.assert_allclose(dev['accuracy'], summary['ensemble_dev_accuracy'], rtol=1e-6)
  assert len(dev['member_accuracy']) == 3
  sentences = [['very', 'good', 'movie'], ['dull', 'plot', 'and', 'awful', 'acting']]
  rows = trained.predict(sentences)
  batch = vocab.encode_sentences(sentences, trained.task.vocabs['words'], None, 20)
  probs = [jax.nn.softmax(logits) for logits in each_member_alone(trained, batch)]
  mean = np.mean(probs, axis=0)
  assert not np.allclose(probs[0], probs[1])  # the seeds made different members
  for row, p in zip(rows, mean, strict=True):
    np.testing.assert_allclose(row['probability'], p.max(), rtol=1e-5)
  # --mode=predict's arrays carry every class's mean probability too.
  np.testing.assert_allclose(trained.predict_encoded(batch)['probabilities'], mean, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.subprocess
def test_train_py_runs_the_tiny_config_and_predicts_tags(corpora, tmp_path):
  workdir = str(tmp_path / 'run')
  base = [sys.executable, 'train.py', f'--workdir={workdir}']
  cfg = [
    '--config=configs/pos_ud.py:tiny',
    f'--config.data.train={corpora["pos_train"]}',
    f'--config.data.dev={corpora["pos_dev"]}',
    '--config.train.epochs=2',
  ]
  subprocess.run(base + cfg, cwd=ROOT, check=True, capture_output=True)
  raw = tmp_path / 'in.txt'
  raw.write_text('the cat sees a dog .\n')
  out = tmp_path / 'p.jsonl'
  subprocess.run(
    base + ['--mode=predict', f'--input={raw}', f'--output={out}'],
    cwd=ROOT,
    check=True,
    capture_output=True,
  )
  row = json.loads(out.read_text())
  assert row['tokens'] == ['the', 'cat', 'sees', 'a', 'dog', '.'] and len(row['tags']) == 6
  assert [row] == bilstm_jax.load(workdir).predict(str(raw))
