"""A task from outside the package (examples/char_segmenter.py) through the whole app.

The example is named only by its path, so these tests are the proof that a user's own
task needs no edit inside `bilstm_jax`: train, evaluate, predict in its own terms, a
4-member ensemble, a SIGKILL and resume that ends bit-identical, the export, and reloading
a workdir wherever its 'module:Class' path still leads.
"""

import importlib.util
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, errors, faults, tasks
from bilstm_jax.nn import native
from bilstm_jax.training import export
from tests.training.test_checkpoint import _assert_same
from tests.utils import ROOT, assert_predict_agrees, each_member_alone

EXAMPLES = os.path.join(ROOT, 'examples')
EXAMPLE = os.path.join(EXAMPLES, 'char_segmenter.py')
TEXTS = ['thecatsatonthemat', 'yes we ran', 'A', '']


def _module(path: str, name: str):
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def example_config(variant: str = 'tiny'):
  """examples/char_segmenter_config.py's config, loaded by path as train.py loads it."""
  config = os.path.join(EXAMPLES, 'char_segmenter_config.py')
  return _module(config, 'char_segmenter_config').get_config(variant)


def segmenter():
  """The example's task class, as the app loads it from `data.task`."""
  return tasks.task_class(example_config().data.task)


@pytest.fixture
def importable(monkeypatch):
  """A function putting examples/ on sys.path; `char_segmenter` is imported afresh after."""
  sys.modules.pop('char_segmenter', None)
  yield lambda: monkeypatch.syspath_prepend(EXAMPLES)
  sys.modules.pop('char_segmenter', None)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A tiny run of the example (3 epochs of 4 steps, a checkpoint every 2 steps)."""
  workdir = str(tmp_path_factory.mktemp('segmenter'))
  summary = app.train_and_evaluate(example_config(), workdir)
  return workdir, summary


def test_no_file_of_the_package_names_the_example():
  names = (b'char_segmenter', b'charsegmenter')
  found = [
    str(path.relative_to(ROOT))
    for path in pathlib.Path(ROOT, 'bilstm_jax').rglob('*')
    if path.is_file() and any(n in path.read_bytes().lower() for n in names)
  ]
  assert not found


def test_a_task_path_finds_the_class_by_module_or_by_file(monkeypatch, importable):
  by_file = segmenter()
  assert issubclass(by_file, tasks.Task) and by_file.name == 'char_segmenter'
  assert isinstance(by_file.objective, tasks.StepLabels)  # composed, not inherited
  monkeypatch.chdir(ROOT)  # a relative file path: from the working directory, same class
  assert tasks.task_class('examples/char_segmenter.py:CharSegmenter') is by_file
  importable()
  by_module = tasks.task_class('char_segmenter:CharSegmenter')
  assert by_module.__module__ == 'char_segmenter' and by_module.name == by_file.name
  # The shipped short names are aliases of the same mechanism.
  assert tasks.task_class('tagging') is tasks.task_class('bilstm_jax.tasks.tagging:TaggingTask')


def test_the_task_checks_its_own_config_keys():
  config = example_config()
  config.data.train = 'sentences.csv'
  with pytest.raises(errors.ConfigError, match=r"data\.train='sentences\.csv': .* reads \.txt"):
    app.validate(config)
  config = example_config()
  config.model.word_vectors = 'glove.txt'  # a key only the text tasks take
  with pytest.raises(errors.ConfigError, match=r"data\.task='.*char_segmenter\.py:CharSeg"):
    app.validate(config)


@pytest.mark.slow
def test_train_evaluate_and_predict_in_the_tasks_own_terms(trained, tmp_path):
  workdir, summary = trained
  assert summary['task'] == 'char_segmenter' and summary['steps'] == 12
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['data']['task'] == f'{EXAMPLE}:CharSegmenter'
  run = bilstm_jax.load(workdir)
  assert type(run.task) is segmenter()
  dev = bilstm_jax.load(workdir, 'latest').evaluate('dev')
  np.testing.assert_allclose(dev['accuracy'], summary['final_dev_accuracy'], rtol=1e-6)
  assert dev['accuracy'] > 0.8  # more than the share of characters that start no word
  assert set(run.evaluate('test')) == {'loss', 'accuracy'}  # the generated test split
  path = tmp_path / 'texts.txt'
  path.write_text('\n'.join(TEXTS) + '\n')
  # The task's own records hook: --mode=predict writes what load().predict returns.
  records = assert_predict_agrees(workdir, str(path), tmp_path / 'words.jsonl')
  assert [r['text'] for r in records] == ['thecatsatonthemat', 'yesweran', 'a', '']
  for record in records:
    assert ''.join(record['words']) == record['text']
  tags = run.predict_arrays(str(path))['labels']
  for record, row in zip(records, tags, strict=True):  # a word starts where a tag is 1
    starts = np.cumsum([len(w) for w in record['words']])[:-1]
    assert starts.tolist() == (np.flatnonzero(row[1 : len(record['text'])]) + 1).tolist()


@pytest.mark.slow
def test_export_runs_without_the_task(trained):
  workdir, _ = trained
  fn = export.load(os.path.join(workdir, 'export'))
  data = sys.modules[segmenter().__module__].encode(TEXTS)  # the example's own encoding
  got = np.asarray(fn(data['inputs'], data['lengths']))
  state = bilstm_jax.load(workdir, 'latest').state
  with native.disabled():  # what the export holds: the portable scan
    expect = state.apply_fn({'params': state.params}, data['inputs'], data['lengths'])
  np.testing.assert_array_equal(got, np.asarray(expect))
  assert got.shape == (len(TEXTS), data['inputs'].shape[1], 2)


@pytest.mark.slow
def test_a_workdir_reloads_wherever_its_module_imports(trained, tmp_path, importable):
  workdir = str(tmp_path / 'run')
  shutil.copytree(trained[0], workdir)
  config = os.path.join(workdir, 'config.json')
  with open(config) as f:
    saved = json.load(f)
  saved['data']['task'] = 'char_segmenter:CharSegmenter'
  with open(config, 'w') as f:
    json.dump(saved, f)
  with pytest.raises(errors.ConfigError, match=r"no module named 'char_segmenter' on sys\.path"):
    bilstm_jax.load(workdir)
  importable()
  run = bilstm_jax.load(workdir)
  assert run.task.name == 'char_segmenter'
  original = bilstm_jax.load(trained[0])
  assert run.predict('dev') == original.predict('dev')


@pytest.mark.slow
def test_an_ensemble_of_4_combines_its_members(tmp_path):
  config = example_config('tiny_ensemble')
  config.ensemble.num_members = 4
  summary = app.train_and_evaluate(config, str(tmp_path))
  assert len(summary['members']) == 4
  run = bilstm_jax.load(str(tmp_path), 'latest')
  assert run.num_members == 4
  metrics = run.evaluate('dev')
  assert len(metrics['member_accuracy']) == 4 and 0 <= metrics['accuracy'] <= 1
  dev = run.task.read('dev')
  members = np.stack(each_member_alone(run, dev))
  assert len({m.tobytes() for m in members}) == 4  # seeds differ: so do the members
  mean = jax.nn.softmax(members, -1).mean(0)
  real = np.arange(dev['inputs'].shape[1])[None] < dev['lengths'][:, None]
  labels = run.predict_arrays('dev')['labels']
  np.testing.assert_array_equal(labels[real], mean.argmax(-1)[real])


def _train_py(workdir, *flags, env=None):
  cmd = [sys.executable, 'train.py', f'--workdir={workdir}', *flags]
  env = {**os.environ, 'PYTHONPATH': ROOT, **(env or {})}
  return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.subprocess
def test_sigkill_and_resume_is_bit_identical_then_predict_mode(trained, tmp_path):
  workdir = str(tmp_path / 'run')
  # The task as a relative file path on the command line (config.json records it so).
  flags = [
    '--config=examples/char_segmenter_config.py:tiny',
    '--config.data.task=examples/char_segmenter.py:CharSegmenter',
  ]
  killed = _train_py(workdir, *flags, env={faults.ENV: 'save:3'})
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  steps = [n for n in os.listdir(os.path.join(workdir, 'checkpoints')) if n.isdigit()]
  assert steps and max(map(int, steps)) < 12
  resumed = _train_py(workdir, *flags)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  events = pathlib.Path(workdir, 'metrics.jsonl').read_text().splitlines()
  assert 'resume' in [json.loads(line)['event'] for line in events]
  reference = bilstm_jax.load(trained[0], 'latest').state.params
  _assert_same(reference, bilstm_jax.load(workdir, 'latest').state.params)
  # --mode=predict in a fresh process, from the workdir's own config.json.
  (tmp_path / 'texts.txt').write_text('\n'.join(TEXTS) + '\n')
  out = tmp_path / 'out.jsonl'
  done = _train_py(workdir, '--mode=predict', f'--input={tmp_path}/texts.txt', f'--output={out}')
  assert done.returncode == 0, done.stderr[-2000:]
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert [r['text'] for r in rows] == ['thecatsatonthemat', 'yesweran', 'a', '']
  assert rows == bilstm_jax.load(trained[0]).predict(str(tmp_path / 'texts.txt'))
