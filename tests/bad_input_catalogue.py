"""The bad-input catalogue: what a user can get wrong, and the error that must come back.

Each `Row` is one bad input on one surface: `train.py` (config values, flags, workdirs,
predict inputs), a file reader (.npz, .jsonl, CoNLL-U, CoNLL columns, TSV, raw text, wav,
FSDD folders and lists, CSV, a workdir's task.json and config.json) or the Python API.
`tests/test_bad_input.py` runs every row; docs/guides/reliability.md shows them as a table:

  python -m tests.bad_input_catalogue          # the markdown table
  python -m tests.bad_input_catalogue --counts # rows per surface

A train.py row must end with exit status 1 and exactly one stderr line `Error: ...` that
matches `message`; a reader or API row must raise `error` with a message matching it.
`error` 'warning' marks an irregularity that is reported, not raised (the reader returns
warnings naming the line); 'usage' a train.py misuse caught before a run starts (flags, or
a config file that does not load), which is no `RunError`. For the other train.py rows the
class is checked too: it is the one the command line caught. Messages name what and where:
the file and line, the config key, the argument and its shape.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
from collections.abc import Callable

import numpy as np

from tests import bad_input_fixtures as fx


@dataclasses.dataclass(frozen=True)
class Row:
  """One bad input.

  Attributes:
    id: a unique slug (the test id).
    surface: 'train.py', 'Python API' or the reader's name.
    bad: what is wrong, in words.
    error: the error class's name (bilstm_jax.errors or a builtin), 'warning' or 'usage'.
    message: a regex `re.search` must find in the message (the `Error:` line for train.py).
    argv: train.py rows: the flags after `train.py`; `{tmp}` is the test's directory,
      `{trained}` a workdir holding a trained tiny run. `--workdir={tmp}/run` is added
      unless a `--workdir` is given.
    call: reader and API rows: tmp -> result, the call that must fail.
    files: {path under tmp: bytes or tmp -> bytes}, written before the row runs.
    subprocess: run `python train.py` in a subprocess (end-to-end proof), not in-process.
  """

  id: str
  surface: str
  bad: str
  error: str
  message: str
  argv: tuple[str, ...] | None = None
  call: Callable[[str], object] | None = None
  files: dict = dataclasses.field(default_factory=dict)
  subprocess: bool = False


def _reader(module: str, function: str, name: str, *args) -> Callable[[str], object]:
  """tmp -> bilstm_jax.<module>.<function>(tmp/name, *args), imported when called."""

  def call(tmp: str):
    fn = getattr(importlib.import_module(f'bilstm_jax.{module}'), function)
    return fn(os.path.join(tmp, name), *args)

  return call


def _cli(id, bad, argv, message, error='ConfigError', files=None, subprocess=False) -> Row:
  return Row(id, 'train.py', bad, error, message, tuple(argv), None, files or {}, subprocess)


def _file(surface, id, bad, name, content, call, message, error='DataFileError') -> Row:
  return Row(id, surface, bad, error, message, None, call, {name: content})


D = '--config=default'
TINY = (D, '--config.train.epochs=1', '--config.data.num_train=16', '--config.data.num_dev=8')
TINY += ('--config.data.seq_len=4', '--config.model.hidden_size=4', '--config.train.batch_size=8')
PREDICT = ('--workdir={trained}', '--mode=predict', '--output={tmp}/out.jsonl')
LATIN1 = 'Müller\tB-PER\n'.encode('latin-1')


def _cli_rows() -> list[Row]:
  tagging = (D, '--config.data.task=tagging', '--config.data.train={tmp}/t.jsonl')
  return [
    _cli('cli-key-typo', 'a misspelt config key', [D, '--config.model.hiden_size=4'],
         r"no config key 'hiden_size' \(did you mean 'hidden_size'\?\)", 'usage'),
    _cli('cli-value-type', 'a float for an int key', [D, '--config.model.hidden_size=4.5'],
         r'--config\.model\.hidden_size=4\.5: invalid literal for int', 'usage'),
    _cli('cli-hidden-0', 'hidden size 0', [D, '--config.model.hidden_size=0'],
         r'config\.model\.hidden_size=0: must be >= 1'),
    _cli('cli-layers-0', 'no layers', [D, '--config.model.num_layers=0'],
         r'config\.model\.num_layers=0: must be >= 1'),
    _cli('cli-dropout-1.5', 'dropout 1.5', [D, '--config.model.dropout=1.5'],
         r'config\.model\.dropout=1\.5: must lie in \[0, 1\)'),
    _cli('cli-dtype', 'an unsupported dtype', [D, '--config.model.dtype=float16'],
         r"config\.model\.dtype='float16'"),
    _cli('cli-lr-negative', 'a negative learning rate', [D, '--config.optim.learning_rate=-1'],
         r'config\.optim\.learning_rate=-1\.0: must be finite and >= 0', subprocess=True),
    _cli('cli-lr-nan', 'a NaN learning rate', [D, '--config.optim.learning_rate=nan'],
         r'config\.optim\.learning_rate=nan: must be finite'),
    _cli('cli-clip-negative', 'a negative clipping norm', [D, '--config.optim.grad_clip_norm=-1'],
         r'config\.optim\.grad_clip_norm=-1\.0: must be finite and >= 0'),
    _cli('cli-adversarial-negative', 'a negative adversarial size',
         [D, '--config.model.adversarial=-1'],
         r'config\.model\.adversarial=-1\.0: must be finite and >= 0'),
    _cli('cli-adversarial-task', 'adversarial training on float inputs',
         [D, '--config.model.adversarial=0.5'],
         r"config\.model\.adversarial=0\.5: needs a text task, .*data\.task='bidir_window'"),
    _cli('cli-optimiser', 'an unknown optimiser', [D, '--config.optim.name=lamb'],
         r"config\.optim\.name='lamb': must be one of"),
    _cli('cli-schedule', 'an unknown schedule', [D, '--config.optim.schedule=linear'],
         r"config\.optim\.schedule='linear'"),
    _cli('cli-step-schedule', 'a step schedule without a step', [D, '--config.optim.schedule=step'],
         r'optim\.schedule=step needs optim\.decay_every_steps > 0'),
    _cli('cli-batch-0', 'batch size 0', [D, '--config.train.batch_size=0'],
         r'config\.train\.batch_size=0: must be >= 1'),
    _cli('cli-batch-too-large', 'batch size larger than the data',
         [D, '--config.train.batch_size=1000'],
         r'train\.batch_size=1000 is larger than the training set \(256 examples\)'),
    _cli('cli-epochs-0', 'nothing to train', [D, '--config.train.epochs=0'],
         r'config\.train\.epochs=0: or train\.num_steps > 0'),
    _cli('cli-epochs-negative', 'epochs -1', [D, '--config.train.epochs=-1'],
         r'config\.train\.epochs=-1: must be >= 0'),
    _cli('cli-log-every-0', 'log every 0 epochs', [D, '--config.train.log_every_epochs=0'],
         r'config\.train\.log_every_epochs=0: must be >= 1'),
    _cli('cli-patience-negative', 'negative early-stopping patience',
         [D, '--config.train.early_stopping_patience=-1'],
         r'config\.train\.early_stopping_patience=-1: must be >= 0'),
    _cli('cli-metric', 'a metric the task has not', [D, '--config.train.metric=dev_acc'],
         r"config\.train\.metric='dev_acc': must be one of"),
    _cli('cli-keep-best-0', 'keep no checkpoint', [D, '--config.checkpoint.keep_best=0'],
         r'config\.checkpoint\.keep_best=0: must be >= 1'),
    _cli('cli-buckets-negative', 'buckets -2', [D, '--config.data.buckets=-2'],
         r'config\.data\.buckets=-2: must be >= 0'),
    _cli('cli-width-buckets-negative', 'width buckets -1', [D, '--config.data.width_buckets=-1'],
         r'config\.data\.width_buckets=-1: must be >= 0'),
    _cli('cli-width-buckets-task', 'width buckets for a task without a width axis',
         [D, '--config.data.width_buckets=2'],
         r"config\.data\.width_buckets=2: needs a task with a width axis .*'bidir_window'"),
    _cli('cli-seq-len-0', 'synthetic sequences of length 0', [D, '--config.data.seq_len=0'],
         r'config\.data\.seq_len=0: must be >= 1'),
    _cli('cli-min-length', 'min_length beyond seq_len', [D, '--config.data.min_length=20'],
         r'config\.data\.min_length=20: must lie in \[1, data\.seq_len=10\]'),
    _cli('cli-num-train-0', 'no synthetic training data', [D, '--config.data.num_train=0'],
         r'config\.data\.num_train=0: must be >= 1'),
    _cli('cli-seed-negative', 'a negative seed', [D, '--config.seed=-1'],
         r'config\.seed=-1: must be an integer >= 0'),
    _cli('cli-task', 'an unknown task', [D, '--config.data.task=nope'],
         r"config\.data\.task='nope': must be one of .*or your own Task class as 'module:Class'"),
    _cli('cli-task-module', 'a task path whose module is not on sys.path',
         [D, '--config.data.task=nope:Task'],
         r"config\.data\.task='nope:Task': no module named 'nope' on sys\.path"),
    _cli('cli-task-class', 'a task path naming a class its module has not',
         [D, '--config.data.task=bilstm_jax.tasks:NotThere'],
         r"config\.data\.task='bilstm_jax\.tasks:NotThere': bilstm_jax\.tasks has no 'NotThere'"),
    _cli('cli-task-not-a-task', 'a task file whose class is no Task subclass',
         [D, '--config.data.task={tmp}/mine.py:Mine'],
         r"mine\.py:Mine is the class Mine, not a subclass of bilstm_jax\.tasks\.Task",
         files={'mine.py': b'class Mine:\n  pass\n'}),
    _cli('cli-task-file', 'a task file that does not exist',
         [D, '--config.data.task={tmp}/no_such.py:Mine'],
         r"config\.data\.task='.*/no_such\.py:Mine': no such file .*/no_such\.py"),
    _cli('cli-mesh', 'more devices than there are', [D, '--config.mesh.data=3'],
         r'needs 3 devices; there are 1'),
    _cli('cli-ensemble-0', 'an ensemble of no members',
         ['--config=ensemble', '--config.ensemble.num_members=0'],
         r'config\.ensemble\.num_members=0: must be >= 1'),
    _cli('cli-ensemble-data-mode', 'an unknown ensemble data mode',
         ['--config=ensemble', '--config.ensemble.data_mode=bagging'],
         r"config\.ensemble\.data_mode='bagging': must be one of \['shared', 'shuffled'"),
    _cli('cli-ensemble-buckets', 'length buckets with bootstrap members',
         ['--config=ensemble', '--config.ensemble.data_mode=bootstrap', '--config.data.buckets=2'],
         r"config\.ensemble\.data_mode='bootstrap': needs data\.buckets=0"),
    _cli('cli-ensemble-range', "a learning rate outside the range the ensemble's members use",
         ['--config=ensemble', '--config.optim.learning_rate=0.5'],
         r'config\.optim\.learning_rate=0\.5 lies outside config\.ensemble\.learning_rate='
         r'\(0\.0001, 0\.3\)'),
    _cli('cli-no-train-file', 'a task without data files', [D, '--config.data.task=tagging'],
         r'No train data: set config\.data\.train', 'DataFileError'),
    _cli('cli-missing-train-file', 'a training file that does not exist',
         [D, '--config.data.task=tagging', '--config.data.train=missing.npz'],
         r'missing\.npz does not exist', 'DataFileError', subprocess=True),
    _cli('cli-train-nan-targets', 'NaN in the training targets',
         [D, '--config.data.task=regression', '--config.data.train={tmp}/r.jsonl'],
         r'r\.jsonl: targets contain NaN or inf \(first at index \[1, 0, 0\]\)', 'DataFileError',
         {'r.jsonl': fx.jsonl({'inputs': [[1.0]], 'targets': [[1.0]]},
                              {'inputs': [[1.0]], 'targets': [[float('nan')]]})}),
    _cli('cli-dev-label-range', 'a dev label beyond the training classes',
         [*tagging, '--config.data.dev={tmp}/d.jsonl'],
         r'd\.jsonl: label 7 at \[0, 1\] is outside \[0, 2\)', 'DataFileError',
         {'t.jsonl': fx.jsonl({'inputs': [1, 2], 'labels': [0, 1]}),
          'd.jsonl': fx.jsonl({'inputs': [1, 2], 'labels': [0, 7]})}),
    _cli('cli-dev-token-range', 'a dev token id beyond the vocabulary',
         [*tagging, '--config.data.dev={tmp}/d.jsonl'],
         r'd\.jsonl: token id 9 at \[0, 0\] is outside \[0, 3\)', 'DataFileError',
         {'t.jsonl': fx.jsonl({'inputs': [1, 2], 'labels': [0, 1]}),
          'd.jsonl': fx.jsonl({'inputs': [9, 2], 'labels': [0, 1]})}),
    _cli('cli-text-bad-conllu', 'a CoNLL-U training file with 3 columns',
         ['--config=pos_ud:tiny', '--config.data.train={tmp}/t.conllu'],
         r't\.conllu:1: expected 10 tab-separated columns, found 3', 'DataFileError',
         {'t.conllu': b'1\tThe\tDET\n'}),
    _cli('cli-text-unseen-tag', 'a dev tag the training data has not',
         ['--config=pos_ud:tiny', '--config.data.train={tmp}/t.conllu',
          '--config.data.dev={tmp}/d.conllu'],
         r"d\.conllu: tag 'XYZ' is not in the training data", 'DataFileError',
         {'t.conllu': fx.CONLLU.encode(), 'd.conllu': fx.CONLLU.replace('NOUN', 'XYZ').encode()}),
    _cli('cli-vectors-task', 'word vectors on a task that is not text',
         ['--config=pos_ud:tiny', '--config.data.task=tagging',
          '--config.model.word_vectors=glove.txt'],
         r"config\.model\.word_vectors='glove\.txt': pretrained word vectors are for the text "
         'tasks'),
    _cli('cli-vectors-missing', 'a word-vector file that does not exist',
         ['--config=pos_ud:tiny', '--config.data.train={tmp}/t.conllu',
          '--config.data.dev={tmp}/t.conllu', '--config.model.word_vectors={tmp}/no.txt'],
         r'no\.txt: no such word-vector file', 'DataFileError', {'t.conllu': fx.CONLLU.encode()}),
    _cli('cli-vectors-ragged', 'a word-vector line with a value missing',
         ['--config=pos_ud:tiny', '--config.data.train={tmp}/t.conllu',
          '--config.data.dev={tmp}/t.conllu', '--config.model.word_vectors={tmp}/v.txt'],
         r'v\.txt:2: 1 values, expected 2 \(the dimension of line 1\)', 'DataFileError',
         {'t.conllu': fx.CONLLU.encode(), 'v.txt': b'the 0.1 0.2\nof 0.3\n'}),
    _cli('cli-tsv-unseen-label', 'a dev label the training data has not',
         ['--config=sst2', '--config.data.train={tmp}/t.tsv', '--config.data.dev={tmp}/d.tsv'],
         r"d\.tsv: label '7' is not in the training data", 'DataFileError',
         {'t.tsv': fx.TSV.encode(), 'd.tsv': b'a film\t7\n'}),
    _cli('cli-fsdd-bad-wav', 'a truncated recording in the FSDD folder',
         ['--config=fsdd:tiny', '--config.data.folder={tmp}/rec'],
         r'0_a_10\.wav: truncated: header says 80 samples', 'DataFileError',
         {'rec/0_a_10.wav': fx.wav()[:60], 'rec/0_a_5.wav': fx.wav()}),
    _cli('cli-fsdd-task-json', "an FSDD workdir's task.json without feature settings",
         ['--mode=evaluate'], r"task\.json: no readable feature settings \(KeyError\('features'\)",
         'CheckpointError', fx.fsdd_run_files({'task': 'fsdd', 'sizes': {'input_size': 13}})),
    _cli('cli-csv-missing', 'a forecast CSV with an empty cell',
         ['--config=ett', '--config.data.path={tmp}/e.csv'],
         r"e\.csv:3: column 'OT': empty \(a missing value\)", 'DataFileError',
         {'e.csv': b'date,OT\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,\n'}),
    _cli('cli-segment-len', 'a forecast segment length that does not divide the window',
         ['--config=ett', '--config.model.segment_len=10'],
         r'config\.model\.segment_len=10: must be 0 or divide config\.data\.input_len=96',
         'ConfigError'),
    _cli('cli-fsdd-folder', 'an FSDD folder that does not exist',
         ['--config=fsdd', '--config.data.folder={tmp}/none'],
         r'none: no such folder', 'DataFileError'),
    _cli('cli-config-file', 'a config file that does not exist', ['--config=configs/nope.py'],
         r"No such file or directory: 'configs/nope\.py'", 'usage'),
    _cli('cli-no-config', 'no --config to train with', [], r'--config is required', 'usage'),
    _cli('cli-stray-argument', 'a positional argument', [D, 'extra'],
         r"unexpected arguments \['extra'\]", 'usage'),
    _cli('cli-unknown-flag', 'an unknown flag', [D, '--epochs=3'],
         r"Unknown command line flag 'epochs'", 'usage'),
    _cli('cli-evaluate-empty', 'evaluate a workdir with no run', ['--mode=evaluate'],
         r'run/config\.json does not exist: .*holds no trained run', 'usage'),
    _cli('cli-saved-config-binary', "a workdir's config.json that is not text",
         ['--mode=evaluate'], r'run/config\.json: not UTF-8', 'usage',
         files={'run/config.json': LATIN1}),
    _cli('cli-saved-config-cut', "a workdir's config.json cut short", ['--mode=evaluate'],
         r'run/config\.json:1: not valid JSON', 'usage',
         files={'run/config.json': b'{"model": {"hid'}),
    _cli('cli-saved-config-list', "a workdir's config.json holding a list",
         ['--mode=evaluate'], r'run/config\.json: holds a JSON list, not a config object',
         'usage', files={'run/config.json': b'[1, 2]'}),
    _cli('cli-vocab-fingerprint', "a workdir's vocabulary edited after training",
         ['--mode=evaluate'], r'task\.json: the words vocabulary does not match its fingerprint',
         'CheckpointError',
         fx.text_run_files(lambda spec: spec['fingerprints'].update(words='0' * 64))),
    _cli('cli-vocab-size', "a workdir's vocabulary of another size than its model",
         ['--mode=evaluate'], r'task\.json: vocabulary sizes .* do not match the model sizes',
         'CheckpointError',
         fx.text_run_files(lambda spec: spec['sizes'].update(vocab_size=99))),
    _cli('cli-vocab-unreadable', "a workdir's vocabulary that is not JSON", ['--mode=evaluate'],
         r'task\.json holds no readable vocabularies', 'CheckpointError',
         fx.text_run_files(lambda spec: spec['vocabularies'].update(words='{'))),
    _cli('cli-task-json-other', "a workdir's task.json of another task", ['--mode=evaluate'],
         r"saved task is 'tagging', not 'text_tagging'", 'DataFileError',
         fx.text_run_files(lambda spec: spec.update(task='tagging'))),
    _cli('cli-predict-no-output', 'predict without --output',
         ['--workdir={trained}', '--mode=predict'],
         r'^Error: --mode=predict needs --output \(a \.jsonl or \.npz path\)\.$'),
    _cli('cli-predict-missing', 'predict a file that does not exist',
         [*PREDICT, '--input={tmp}/none.jsonl'], r'none\.jsonl does not exist', 'DataFileError'),
    _cli('cli-predict-format', 'predict a file of an unknown format',
         [*PREDICT, '--input={tmp}/x.txt'], r"x\.txt: unknown format '\.txt'", 'DataFileError',
         {'x.txt': b'1 2 3\n'}),
    _cli('cli-predict-nan', 'predict inputs holding NaN', [*PREDICT, '--input={tmp}/p.jsonl'],
         r'p\.jsonl: inputs contain NaN or inf \(first at index \[0, 1, 2\]\)', 'DataFileError',
         {'p.jsonl': fx.jsonl({'inputs': [[0.0] * 5, [0, 0, float('nan'), 0, 0]]})}),
    _cli('cli-predict-features', 'predict inputs with the wrong feature count',
         [*PREDICT, '--input={tmp}/p.jsonl'], r'p\.jsonl: inputs have 3 features; .*expects 5',
         'DataFileError', {'p.jsonl': fx.jsonl({'inputs': [[0.0, 1.0, 2.0]]})}),
    _cli('cli-predict-ids', 'predict token ids with a float-feature model',
         [*PREDICT, '--input={tmp}/p.jsonl'], r'p\.jsonl: inputs are token ids', 'DataFileError',
         {'p.jsonl': fx.jsonl({'inputs': [1, 2, 3]})}),
    _cli('cli-predict-binary', 'predict a binary file named .jsonl',
         [*PREDICT, '--input={tmp}/p.jsonl'], r'p\.jsonl cannot be read: line 1 is not UTF-8',
         'DataFileError',
         {'p.jsonl': bytes(range(128, 256))}),
    _cli('cli-traceback', '--traceback on a bad config: the traceback is shown',
         [D, '--config.model.hidden_size=0', '--traceback'],
         r'ConfigError: config\.model\.hidden_size=0', subprocess=True),
  ]  # fmt: skip


def _npz_rows() -> list[Row]:
  def row(id, bad, content, message):
    return _file('.npz', id, bad, 'x.npz', content, _reader('data.files', 'read', 'x.npz'), message)

  f3 = np.zeros((2, 3, 1), np.float32)
  good = fx.good_npz()
  not_zip = r'x\.npz is not a readable \.npz archive \(no zip structure\)'
  return [
    row('npz-empty', 'an empty file', b'', not_zip),
    row('npz-text', 'a text file named .npz', b'inputs,1,2\n', not_zip),
    row('npz-truncated', 'an archive cut in half', good[: len(good) // 2], not_zip),
    row('npz-no-inputs', 'no "inputs" array', fx.npz(targets=f3), r'x\.npz lacks "inputs"'),
    row('npz-rank', 'float inputs of rank 2', fx.npz(inputs=np.zeros((2, 3), np.float32)),
        r'x\.npz: float inputs must be \[n, time, features\]; got shape \(2, 3\)'),
    row('npz-dtype', 'complex inputs', fx.npz(inputs=f3.astype(np.complex64)),
        r'x\.npz: inputs must be float or integer; got complex64'),
    row('npz-object', 'an object (pickled) array', fx.npz(inputs=np.array([1, 'a'], object)),
        r'x\.npz is not a readable \.npz archive: Object arrays'),
    row('npz-nan-inputs', 'NaN in the inputs', fx.npz(inputs=np.where(f3 == 0, np.nan, f3)),
        r'x\.npz: inputs contain NaN or inf \(first at index \[0, 0, 0\]\)'),
    row('npz-inf-targets', 'inf in the targets',
        fx.npz(inputs=f3, targets=np.full((2, 3, 1), np.inf, np.float32)),
        r'x\.npz: targets contain NaN or inf'),
    row('npz-targets-shape', 'targets with another time axis',
        fx.npz(inputs=f3, targets=np.zeros((2, 4, 1), np.float32)),
        r'x\.npz: targets must be float\[2, 3, outputs\]; got float32\[2, 4, 1\]'),
    row('npz-labels-shape', 'labels of shape [n, 1]',
        fx.npz(inputs=f3, labels=np.zeros((2, 1), np.int64)),
        r'x\.npz: labels must be int\[2\] .* got int64\[2, 1\]'),
    row('npz-labels-int32', 'a label beyond int32 (silently wrapped before)',
        fx.npz(inputs=f3, labels=np.array([0, 2**40])),
        r'x\.npz: labels hold 1099511627776 at index \[1\], beyond the int32 range'),
    row('npz-float32-range', 'an input beyond float32',
        fx.npz(inputs=np.full((2, 3, 1), 1e300)), r'x\.npz: inputs hold 1e\+300 .* float32 range'),
    row('npz-lengths-long', 'a length beyond the time axis',
        fx.npz(inputs=f3, lengths=np.array([3, 5])),
        r'x\.npz: lengths must lie in \[0, 3\] \(the time axis\); example 1 has 5'),
    row('npz-lengths-negative', 'a negative length',
        fx.npz(inputs=f3, lengths=np.array([-1, 2])),
        r'x\.npz: lengths must lie in \[0, 3\] .*example 0 has -1'),
    row('npz-lengths-float', 'float lengths', fx.npz(inputs=f3, lengths=np.array([1.0, 2.0])),
        r'x\.npz: lengths must be int\[2\]; got float64\[2\]'),
    row('npz-unknown-key', 'an unknown array', fx.npz(inputs=f3, weights=np.ones(2)),
        r"x\.npz: unknown keys \['weights'\]"),
  ]  # fmt: skip


def _jsonl_rows() -> list[Row]:
  def row(id, bad, content, message):
    call = _reader('data.files', 'read', 'x.jsonl')
    return _file('.jsonl', id, bad, 'x.jsonl', content, call, message)

  return [
    row('jsonl-empty', 'an empty file', b'', r'x\.jsonl holds no sequences'),
    row('jsonl-latin1', 'Latin-1 text', b'{"inputs": [1]}\n' + LATIN1,
        r'x\.jsonl cannot be read: line 2 is not UTF-8'),
    row('jsonl-utf16', 'UTF-16 text', '{"inputs": [1]}\n'.encode('utf-16'),
        r'x\.jsonl cannot be read: line 1 is not UTF-8'),
    row('jsonl-truncated', 'the last line cut short', b'{"inputs": [1, 2]}\n{"inputs": [1,',
        r'x\.jsonl:2: not valid JSON'),
    row('jsonl-deep', 'JSON nested 100000 deep', b'{"inputs": ' + b'[' * 100000 + b'\n',
        r'x\.jsonl:1: JSON nested too deeply'),
    row('jsonl-nan-inputs', 'NaN in the inputs', b'{"inputs": [[0.5], [NaN]]}\n',
        r'x\.jsonl: inputs contain NaN or inf \(first at index \[0, 1, 0\]\)'),
    row('jsonl-inf-targets', 'inf in the targets',
        b'{"inputs": [[0.5]], "targets": [[1.0]]}\n{"inputs": [[0.5]], "targets": [[Infinity]]}\n',
        r'x\.jsonl: targets contain NaN or inf \(first at index \[1, 0, 0\]\)'),
    row('jsonl-width', 'rows of different widths', fx.jsonl({'inputs': [[1.0, 2.0]]},
                                                            {'inputs': [[1.0]]}),
        r'x\.jsonl:2: "inputs" rows have 1 values; line 1 has 2'),
    row('jsonl-label-steps', 'fewer labels than steps', fx.jsonl({'inputs': [1, 2], 'labels': [0]}),
        r'x\.jsonl:1: "labels" has 1 steps; "inputs" has 2'),
    row('jsonl-label-float', 'a fractional label', fx.jsonl({'inputs': [1, 2], 'labels': 0.5}),
        r'x\.jsonl:1: "labels" must be an integer'),
    row('jsonl-mixed', 'token ids after float features',
        fx.jsonl({'inputs': [[1.0]]}, {'inputs': [3, 4]}),
        r'x\.jsonl:2: "inputs" are integers; line 1 has floats'),
    row('jsonl-strings', 'strings as inputs', fx.jsonl({'inputs': ['a', 'b']}),
        r'x\.jsonl:1: "inputs" must hold numbers'),
    row('jsonl-not-object', 'a line that is a list', b'[1, 2]\n',
        r'x\.jsonl:1: expected an object with "inputs"'),
  ]  # fmt: skip


def _text_rows() -> list[Row]:
  conllu = _reader('data.text', 'read_conllu', 'x.conllu')
  conll = _reader('data.text', 'read_conll', 'x.txt')
  tsv = _reader('data.text', 'read_tsv', 'x.tsv')
  raw = _reader('data.text', 'read_raw', 'x.txt')
  ok = fx.CONLLU.encode()
  return [
    _file('CoNLL-U', 'conllu-empty', 'an empty file', 'x.conllu', b'', conllu,
          r'x\.conllu: holds no sentences'),
    _file('CoNLL-U', 'conllu-columns', 'a line of 9 columns', 'x.conllu',
          ok + b'1\ta\tb\tc\td\te\tf\tg\th\n', conllu,
          r'x\.conllu:10: expected 10 tab-separated columns, found 9'),
    _file('CoNLL-U', 'conllu-truncated', 'the last line cut short', 'x.conllu', ok[:-30], conllu,
          r'x\.conllu:8: expected 10 tab-separated columns'),
    _file('CoNLL-U', 'conllu-ids', 'word IDs that skip', 'x.conllu',
          ok.replace(b'\n3\tsleeps', b'\n4\tsleeps'), conllu,
          r'x\.conllu:4: word ID 4 where 3 was expected'),
    _file('CoNLL-U', 'conllu-bad-id', 'a word ID that is no number', 'x.conllu',
          b'x\ta\tb\tc\td\te\tf\tg\th\ti\n', conllu, r"x\.conllu:1: bad word ID 'x'"),
    _file('CoNLL-U', 'conllu-latin1', 'Latin-1 text', 'x.conllu',
          ok + '1\tMüller\t_\tPROPN\t_\t_\t0\troot\t_\t_\n'.encode('latin-1'), conllu,
          r'x\.conllu:10: not UTF-8'),
    _file('CoNLL-U', 'conllu-utf16', 'UTF-16 text', 'x.conllu', fx.CONLLU.encode('utf-16'),
          conllu, r'x\.conllu:1: not UTF-8'),
    _file('CoNLL columns', 'conll-empty', 'only a -DOCSTART- line', 'x.txt',
          b'-DOCSTART- O\n\n', conll, r'x\.txt: holds no sentences'),
    _file('CoNLL columns', 'conll-width', 'a line with another column count', 'x.txt',
          b'EU B-ORG\nrejects NN O\n', conll, r'x\.txt:2: 3 columns; the first token line has 2'),
    _file('CoNLL columns', 'conll-binary', 'binary bytes', 'x.txt', bytes(range(256)), conll,
          r'x\.txt:2: not UTF-8'),
    _file('CoNLL columns', 'conll-utf16', 'UTF-16 text', 'x.txt', fx.CONLL.encode('utf-16'),
          conll, r'x\.txt:1: not UTF-8'),
    _file('TSV', 'tsv-empty', 'a header and nothing else', 'x.tsv', b'sentence\tlabel\n', tsv,
          r'x\.tsv: holds no examples'),
    _file('TSV', 'tsv-no-tab', 'a line without a tab', 'x.tsv', b'a good film 1\n', tsv,
          r'x\.tsv:1: expected sentence<TAB>label, found 1'),
    _file('TSV', 'tsv-empty-label', 'an empty label', 'x.tsv', b'a good film\t \n', tsv,
          r'x\.tsv:1: empty label'),
    _file('TSV', 'tsv-latin1', 'Latin-1 text', 'x.tsv', 'très bon\t1\n'.encode('latin-1'), tsv,
          r'x\.tsv:1: not UTF-8'),
    _file('raw text', 'raw-empty', 'an empty file to predict', 'x.txt', b'', raw,
          r'x\.txt: holds no lines'),
    _file('raw text', 'raw-utf16', 'UTF-16 text to predict', 'x.txt', 'a b\n'.encode('utf-16'),
          raw, r'x\.txt:1: not UTF-8'),
  ]  # fmt: skip


def _wav_rows() -> list[Row]:
  def row(id, bad, content, message, resample=False):
    call = _reader('data.wav', 'read_wav', '0_x_1.wav', 8000, resample)
    return _file('wav', id, bad, '0_x_1.wav', content, call, message)

  good = fx.wav()
  return [
    row('wav-empty', 'an empty file', b'', r'0_x_1\.wav: empty file \(0 bytes\)'),
    row('wav-text', 'a text file named .wav', b'hello, world\n' * 4,
        r'0_x_1\.wav: not a RIFF/WAVE file'),
    row('wav-header-cut', 'a header cut short', good[:30], r'0_x_1\.wav: truncated wav header'),
    row('wav-data-cut', 'samples cut short', good[:60],
        r'0_x_1\.wav: truncated: header says 80 samples, file holds 8'),
    row('wav-rate', 'another sample rate', fx.wav(rate=16000),
        r'0_x_1\.wav: sample rate 16000 Hz; expected 8000 Hz'),
    row('wav-rate-0', 'a sample rate of 0 (ZeroDivisionError before)', fx.wav_field(24, '<I', 0),
        r'0_x_1\.wav: sample rate 0 Hz in the header', resample=True),
    row('wav-stereo', 'two channels', fx.wav(channels=2), r'0_x_1\.wav: 2 channels; expected mono'),
    row('wav-8bit', '8-bit samples', fx.wav(width=1), r'0_x_1\.wav: 8-bit samples'),
    row('wav-float', 'float samples (format 3)', fx.wav_field(20, '<H', 3),
        r'0_x_1\.wav: not integer PCM'),
    row('wav-no-samples', 'no samples', fx.wav(samples=0), r'0_x_1\.wav: holds no samples'),
  ]  # fmt: skip


def _fsdd_rows() -> list[Row]:
  names = _reader('data.fsdd', 'list_recordings', 'rec')

  def speech_source(source: str):
    def call(tmp):
      from bilstm_jax.tasks import speech

      return speech.SpokenDigitTask(folder=os.path.join(tmp, 'rec')).recordings(
        os.path.join(tmp, source), False
      )

    return call

  return [
    Row('fsdd-stray', 'FSDD folder', 'a file not named digit_speaker_index.wav', 'DataFileError',
        r'rec/notes\.txt: not an FSDD name', call=names,
        files={'rec/0_jackson_1.wav': fx.wav(), 'rec/notes.txt': b'x'}),
    Row('fsdd-empty', 'FSDD folder', 'an empty folder', 'DataFileError',
        r'rec: holds no recordings', call=names, files={'rec/.keep': b''}),
    Row('fsdd-missing', 'FSDD folder', 'no such folder', 'DataFileError',
        r'rec: no such folder', call=names),
    Row('fsdd-list-latin1', 'FSDD .txt list', 'a list of wavs in Latin-1', 'DataFileError',
        r'list\.txt:2: not UTF-8', call=speech_source('list.txt'),
        files={'list.txt': b'a.wav\n' + 'é.wav\n'.encode('latin-1')}),
    Row('fsdd-list-empty', 'FSDD .txt list', 'a list of only comments', 'DataFileError',
        r'list\.txt: lists no files', call=speech_source('list.txt'),
        files={'list.txt': b'# nothing\n\n'}),
    Row('fsdd-source', 'FSDD .txt list', 'a source that is no folder, wav or list',
        'DataFileError', r"x\.flac': not 'train', 'dev', 'test', a folder",
        call=speech_source('x.flac')),
  ]  # fmt: skip


def _csv_rows() -> list[Row]:
  def row(id, bad, content, message, error='DataFileError', time='date'):
    call = _reader('data.csv_series', 'read_csv', 'x.csv', time)
    return _file('CSV', id, bad, 'x.csv', content, call, message, error)

  def spacing(content, message):
    def call(tmp):
      from bilstm_jax.data import csv_series

      return csv_series.read_csv(os.path.join(tmp, 'x.csv')).warnings

    return Row('csv-repeated-time', 'CSV', 'a repeated time stamp', 'warning', message,
               call=call, files={'x.csv': content})  # fmt: skip

  h = b'date,a\n'
  return [
    row('csv-empty', 'an empty file', b'', r'x\.csv:1: the file is empty'),
    row('csv-header-only', 'a header and no rows', h, r'x\.csv: holds a header but no data rows'),
    row('csv-missing-value', 'an empty cell', h + b'1,1\n2,\n',
        r"x\.csv:3: column 'a': empty \(a missing value\)"),
    row('csv-short-row', 'a row with a cell missing', b'date,a,b\n1,1,2\n2,3\n',
        r"x\.csv:3: column 'b': missing \(the row is short\)"),
    row('csv-non-numeric', 'a cell that is no number', h + b'1,1\n2,abc\n',
        r"x\.csv:3: column 'a': 'abc' is not a number"),
    row('csv-inf', 'an infinite value', h + b'1,inf\n', r"x\.csv:2: column 'a': 'inf' is not a "
        'finite number'),
    row('csv-nan-time', 'a NaN time stamp (accepted before)', h + b'nan,1\n2,2\n',
        r"x\.csv:2: column 'date': 'nan' is not a finite time stamp"),
    row('csv-bad-date', 'a date that does not exist', h + b'2020-13-45,1\n',
        r"x\.csv:2: column 'date': '2020-13-45' is neither a number nor an ISO date"),
    row('csv-nat', "a 'NaT' date (accepted before)", h + b'2020-01-01,1\nNaT,2\n',
        r"x\.csv:3: column 'date': 'NaT' is neither a number nor an ISO date"),
    row('csv-time-zone', 'a time stamp with a time zone (a numpy warning before)',
        h + b'2020-01-01T00:00Z,1\n', r"x\.csv:2: column 'date': '2020-01-01T00:00Z' has a time "
        'zone'),
    row('csv-column', 'no time column of that name', b'time,a\n1,2\n',
        r"x\.csv:1: column 'date': not in the header"),
    row('csv-duplicate-column', 'a column named twice', b'date,a,a\n1,2,3\n',
        r"x\.csv:1: column 'a': named twice in the header"),
    row('csv-long-row', 'a row with more cells than the header', h + b'1,2,3\n',
        r'x\.csv:2: row has 3 cells; the header names 2 columns'),
    row('csv-latin1', 'Latin-1 text', h + b'1,2\n' + '2,é\n'.encode('latin-1'),
        r'x\.csv:3: not UTF-8'),
    row('csv-utf16', 'UTF-16 text', fx.CSV.encode('utf-16'), r'x\.csv:1: not UTF-8'),
    row('csv-nul', 'a NUL byte in a cell', h + b'1,2\x00\n',
        r"x\.csv:2: column 'a': '2\\x00' is not a number"),
    spacing(h + b'1,1\n2,2\n2,3\n3,4\n', r'x\.csv:4: time 2\.0 repeats the previous row'),
  ]  # fmt: skip


def _api_rows() -> list[Row]:
  def bilstm(inputs, lengths=None):
    def call(tmp):
      import jax

      from bilstm_jax import BiLSTM

      return BiLSTM(hidden_size=2).init(jax.random.key(0), inputs(), lengths and lengths())

    return call

  def crf(emissions_shape, tags_shape, num_tags=3, tag_value=0):
    def call(tmp):
      import jax
      import jax.numpy as jnp

      from bilstm_jax import CRF

      em = jnp.zeros(emissions_shape)
      tags = jnp.full(tags_shape, tag_value, jnp.int32)
      lengths = jnp.full(emissions_shape[:1], emissions_shape[1], jnp.int32)
      return CRF(num_tags).init(jax.random.key(0), em, tags, lengths)

    return call

  def model(name, inputs, **kwargs):
    def call(tmp):
      import jax

      import bilstm_jax

      return getattr(bilstm_jax, name)(hidden_size=2, **kwargs).init(jax.random.key(0), inputs())

    return call

  def load(tmp):
    from bilstm_jax import load

    return load(tmp)

  def vocab(tmp):
    from bilstm_jax.data.vocab import Vocabulary

    return Vocabulary.from_json(
      '{"format": "bilstm_jax.Vocabulary/1", "tokens": ["<pad>", "<unk>"], "counts": [0, '
      'Infinity], "lowercase": false, "pad_token": "<pad>", "unk_token": "<unk>"}'
    )

  def api(id, bad, error, message, call):
    return Row(id, 'Python API', bad, error, message, call=call)

  f = np.float32
  return [
    api('api-bilstm-rank', 'BiLSTM inputs of rank 2', 'ValueError',
        r'BiLSTM inputs must have rank 3 \[batch, time, features\]; got shape \(2, 3\)',
        bilstm(lambda: np.zeros((2, 3), f))),
    api('api-bilstm-dtype', 'BiLSTM integer inputs', 'TypeError',
        r'BiLSTM inputs must be floating point; got dtype int32',
        bilstm(lambda: np.zeros((2, 3, 1), np.int32))),
    api('api-bilstm-nan', 'BiLSTM inputs holding NaN', 'ValueError',
        r'BiLSTM inputs contain NaN or inf \(first at index \[0, 0, 0\]\)',
        bilstm(lambda: np.full((2, 3, 1), np.nan, f))),
    api('api-lengths-shape', 'lengths of shape [batch, 1]', 'ValueError',
        r'lengths must have shape \[batch\]=\(2,\); got \(2, 1\)',
        bilstm(lambda: np.zeros((2, 3, 1), f), lambda: np.ones((2, 1), np.int32))),
    api('api-lengths-dtype', 'float lengths', 'TypeError',
        r'lengths must be an integer array; got dtype float32',
        bilstm(lambda: np.zeros((2, 3, 1), f), lambda: np.ones((2,), f))),
    api('api-lengths-long', 'a length beyond the time axis', 'ValueError',
        r'lengths must be <= the time axis \(3\); got 4 at batch index 1',
        bilstm(lambda: np.zeros((2, 3, 1), f), lambda: np.array([3, 4], np.int32))),
    api('api-lengths-negative', 'a negative length', 'ValueError',
        r'lengths must be >= 0; got -1 at 0',
        bilstm(lambda: np.zeros((2, 3, 1), f), lambda: np.array([-1, 2], np.int32))),
    api('api-crf-tags', 'CRF emissions for 4 tags, layer for 3', 'ValueError',
        r'CRF emissions must be \[batch, time, 3\]; got shape \(2, 5, 4\)',
        crf((2, 5, 4), (2, 5))),
    api('api-crf-tags-shape', 'CRF gold tags of another time axis', 'ValueError',
        r'CRF tags must be int\[batch, time\]=\(2, 5\); got shape \(2, 4\)',
        crf((2, 5, 3), (2, 4))),
    api('api-crf-tag-range', 'a CRF gold tag outside [0, num_tags)', 'ValueError',
        r'CRF tags must lie in \[0, 3\); got 3 at \[0, 0\]', crf((2, 5, 3), (2, 5), tag_value=3)),
    api('api-regressor-rank', 'BiLSTMRegressor inputs of rank 2', 'ValueError',
        r'inputs must be float\[batch, time, features\] .*got shape \(2, 3\)',
        model('BiLSTMRegressor', lambda: np.zeros((2, 3), f))),
    api('api-tagger-float-ids', 'BiLSTMTagger with a vocabulary given float features',
        'ValueError', r'inputs must be token ids int\[batch, time\] \(vocab_size=5\); got '
        r'float32\[2, 3, 1\]', model('BiLSTMTagger', lambda: np.zeros((2, 3, 1), f), vocab_size=5)),
    api('api-classifier-id-range', 'a token id past the embedding table (clamped before)',
        'ValueError', r'inputs: token id 5 at \[1, 2\] is outside \[0, 5\)',
        model('BiLSTMClassifier', lambda: np.array([[1, 2, 3], [0, 0, 5]], np.int32),
              vocab_size=5)),
    api('api-load-empty', 'load() on a directory without a run', 'CheckpointError',
        r'No checkpoints in .*/checkpoints; train first', load),
    api('api-vocab-json', 'a saved Vocabulary with an infinite count (OverflowError before)',
        'ValueError', r'Not a saved Vocabulary: cannot convert float infinity', vocab),
  ]  # fmt: skip


ROWS: list[Row] = [
  *_cli_rows(),
  *_npz_rows(),
  *_jsonl_rows(),
  *_text_rows(),
  *_wav_rows(),
  *_fsdd_rows(),
  *_csv_rows(),
  *_api_rows(),
]


def counts() -> dict[str, int]:
  """{surface: number of rows}, in catalogue order."""
  out: dict[str, int] = {}
  for row in ROWS:
    out[row.surface] = out.get(row.surface, 0) + 1
  return out


def _cell(text: str) -> str:
  return text.replace('|', '\\|').replace('\n', ' ')


def markdown() -> str:
  """The catalogue as a markdown table (what docs/guides/reliability.md shows between its
  markers)."""
  lines = [
    '| # | id | surface | bad input | error | message matches |',
    '|---|---|---|---|---|---|',
  ]
  for i, row in enumerate(ROWS, 1):
    cells = [str(i), f'`{row.id}`', row.surface, row.bad, row.error, f'`{row.message}`']
    lines.append('| ' + ' | '.join(_cell(c) for c in cells) + ' |')
  return '\n'.join(lines) + '\n'


if __name__ == '__main__':
  if '--counts' in sys.argv:
    for surface, n in counts().items():
      print(f'{surface}: {n}')
    print(f'total: {len(ROWS)}')
  else:
    sys.stdout.write(markdown())
