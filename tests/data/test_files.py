"""Data files for the generic tasks: every kind reads the same from .npz and .jsonl, and
every malformed file is an error naming the file (and the line)."""

import json

import numpy as np
import pytest

from bilstm_jax.data import files
from bilstm_jax.errors import DataFileError
from bilstm_jax.tasks import ClassificationTask, RegressionTask, TaggingTask
from tests.tasks import generated


@pytest.mark.parametrize('kind', ['regression', 'tagging', 'classification'])
def test_npz_and_jsonl_read_to_the_same_dataset(tmp_path, kind):
  data = getattr(generated, kind)(7, seed=0)
  a = files.read(generated.write(tmp_path / 'a.npz', data))
  b = files.read(generated.write(tmp_path / 'b.jsonl', data))
  assert sorted(a) == sorted(b) == sorted(data)
  time = int(data['lengths'].max())  # .jsonl holds no padding beyond the longest example
  for key in data:
    x = a[key][:, :time] if a[key].ndim >= 2 else a[key]
    np.testing.assert_array_equal(x, b[key], err_msg=key)
  assert a['inputs'].dtype == (np.int32 if kind == 'classification' else np.float32)


def _jsonl(tmp_path, *rows):
  path = tmp_path / 'd.jsonl'
  path.write_text(''.join((r if isinstance(r, str) else json.dumps(r)) + '\n' for r in rows))
  return str(path)


@pytest.mark.parametrize(
  'rows, message',
  [
    (['{"inputs": [[1, 2]]', '{"inputs": [[1]]}'], r'd\.jsonl:1: not valid JSON'),
    ([{'inputs': [[1.0, 2.0]]}, {'inputs': [3, 4]}], r'd\.jsonl:2: "inputs" are integers'),
    (
      [{'inputs': [[1.0, 2.0]]}, {'inputs': [[1.0, 2.0, 3.0]]}],
      r'd\.jsonl:2: "inputs" rows have 3',
    ),
    ([{'inputs': [1, 2], 'labels': [0]}], r'd\.jsonl:1: "labels" has 1 steps; "inputs" has 2'),
    ([{'inputs': [1, 2], 'labels': 1}, {'inputs': [3]}], r'd\.jsonl:2: no "labels"; line 1'),
    (
      [{'inputs': [1, 2], 'labels': 1}, {'inputs': [3], 'labels': [1]}],
      r'd\.jsonl:2: "labels" mixes',
    ),
    ([{'inputs': [1, 2], 'labels': 0.5}], r'd\.jsonl:1: "labels" must be an integer'),
    ([{'inputs': [[1.0]], 'target': [[1.0]]}], r"d\.jsonl:1: unknown keys \['target'\]"),
    ([{'inputs': ['a', 'b']}], r'd\.jsonl:1: "inputs" must hold numbers'),
    ([], r'd\.jsonl holds no sequences'),
  ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, rows, message):
  with pytest.raises(DataFileError, match=message):
    files.read(_jsonl(tmp_path, *rows))


def test_malformed_npz_names_the_file(tmp_path):
  def npz(**arrays):
    path = tmp_path / 'd.npz'
    np.savez(path, **arrays)
    return str(path)

  x = np.zeros((2, 3, 1), np.float32)
  cases = [
    (dict(inputs=np.zeros((2, 3))), r'd\.npz: float inputs must be \[n, time, features\]'),
    (dict(inputs=x, lengths=np.array([4, 1])), r'd\.npz: lengths must lie in \[0, 3\]'),
    (dict(inputs=x, lengths=np.array([-1, 1])), r'example 0 has -1'),
    (dict(inputs=x, lengths=np.array([1.0, 2.0])), r'lengths must be int\[2\]'),
    (dict(inputs=np.full((2, 3, 1), np.nan, np.float32)), r'd\.npz: inputs contain NaN'),
    (dict(inputs=x, targets=np.full((2, 3, 1), np.inf, np.float32)), r'targets contain NaN or inf'),
    (dict(inputs=x, labels=np.zeros((2, 4), np.int32)), r'labels must be int\[2\]'),
    (dict(inputs=x, targets=np.zeros((2, 3, 1), np.int32)), r'targets must be float'),
    (dict(lengths=np.array([1, 2])), r'd\.npz lacks "inputs"'),
  ]
  for arrays, message in cases:
    with pytest.raises(DataFileError, match=message):
      files.read(npz(**arrays))
  (tmp_path / 'garbage.npz').write_bytes(b'not a zip')
  with pytest.raises(DataFileError, match=r'garbage\.npz is not a readable \.npz'):
    files.read(str(tmp_path / 'garbage.npz'))
  with pytest.raises(DataFileError, match=r"unknown format '\.csv'"):
    files.read(str(tmp_path / 'x.csv'))
  (tmp_path / 'latin1.jsonl').write_bytes('{"inputs": [[1.0]]}\n\xe9\n'.encode('latin-1'))
  with pytest.raises(DataFileError, match=r'latin1\.jsonl cannot be read'):
    files.read(str(tmp_path / 'latin1.jsonl'))


def test_tasks_check_their_data_against_the_training_file(tmp_path):
  tag_train = generated.tagging(20, seed=0)
  task = TaggingTask().fit(generated.write(tmp_path / 'train.npz', tag_train))
  assert task.sizes == {'input_size': 2, 'num_classes': 4}
  bad = dict(tag_train, labels=tag_train['labels'] + 3)
  with pytest.raises(
    DataFileError, match=r'dev\.npz: label \d at \[\d+, \d+\] is outside \[0, 4\)'
  ):
    task.read(generated.write(tmp_path / 'dev.npz', bad))
  wide = dict(tag_train, inputs=np.zeros((20, 12, 3), np.float32))
  with pytest.raises(
    DataFileError, match=r'wide\.npz: inputs have 3 features; the model expects 2'
  ):
    task.read(generated.write(tmp_path / 'wide.npz', wide))
  one_per_sequence = generated.classification(10, seed=0)
  with pytest.raises(DataFileError, match=r'use data\.task=classification'):
    TaggingTask().read(generated.write(tmp_path / 'seq.npz', one_per_sequence))
  unlabelled = {k: v for k, v in tag_train.items() if k != 'labels'}
  with pytest.raises(DataFileError, match=r'tags\.npz has no "labels"'):
    task.read(generated.write(tmp_path / 'tags.npz', unlabelled))
  assert 'labels' not in task.read(str(tmp_path / 'tags.npz'), labelled=False)

  cls = ClassificationTask().fit(generated.write(tmp_path / 'cls.npz', one_per_sequence))
  assert cls.sizes == {'vocab_size': 6, 'num_classes': 2}
  big_id = dict(one_per_sequence, inputs=one_per_sequence['inputs'] * 0 + 9)
  with pytest.raises(DataFileError, match=r'ids\.npz: token id 9 at \[0, 0\] is outside \[0, 6\)'):
    cls.read(generated.write(tmp_path / 'ids.npz', big_id))
  with pytest.raises(DataFileError, match=r'use data\.task=tagging'):
    ClassificationTask().read(generated.write(tmp_path / 'steps.npz', tag_train))
  floats = generated.tagging(4, seed=1)
  with pytest.raises(DataFileError, match=r'f\.npz: inputs are float features; the model takes'):
    cls.read(generated.write(tmp_path / 'f.npz', dict(floats, labels=np.zeros(4, np.int32))))

  reg = RegressionTask().fit(generated.write(tmp_path / 'reg.npz', generated.regression(5, seed=0)))
  assert reg.sizes == {'input_size': 2, 'output_size': 1}
  two_out = generated.regression(5, seed=0)
  two_out['targets'] = np.concatenate([two_out['targets']] * 2, -1)
  with pytest.raises(DataFileError, match=r'out\.npz: targets have 2 outputs per step; the model'):
    reg.read(generated.write(tmp_path / 'out.npz', two_out))
