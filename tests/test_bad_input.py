"""Every row of the bad-input catalogue (tests/bad_input_catalogue.py) fails as it says.

train.py rows run the command line in this process (`bilstm_jax.cli.main`, stderr captured):
exit status 1, exactly one `Error: ...` line matching the row, no traceback, and no workdir
left behind by a run that could not start. Rows marked `subprocess` run `python train.py`
for real, to prove the same end to end; `cli-traceback` shows the traceback on request.
Reader and API rows must raise the row's class with a matching message.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import os
import re
import subprocess
import sys
import warnings

import pytest

from bilstm_jax import errors
from tests import bad_input_catalogue as catalogue
from tests import bad_input_fixtures as fx
from tests.utils import ROOT

MARKERS = ('<!-- bad-input-catalogue:start -->', '<!-- bad-input-catalogue:end -->')
CATALOGUE_PAGE = os.path.join('docs', 'guides', 'reliability.md')  # shows the table
# Flags every in-process run gets: no process-wide allocator tuning, no cache on disk.
QUIET = ('--notune_cpu', '--compilation_cache=')


def run_cli(argv: list[str]) -> tuple[int, str, str, list[type]]:
  """(exit status, stdout, stderr, classes) of `train.py ARGV`, run in this process;
  `classes` are those of the exceptions the command line turned into its `Error:` line.

  absl's flags are global: each run starts from their defaults, and the `--config.*`
  override flags ml_collections defined for the previous run are removed (it reads the
  overrides from sys.argv, so that is set for the run's duration).
  """
  from absl import flags

  from bilstm_jax import cli

  flags.FLAGS.unparse_flags()
  for name in [n for n in flags.FLAGS if n.startswith('config.')]:
    delattr(flags.FLAGS, name)
  full = ['train.py', *QUIET, *argv]
  out, err = io.StringIO(), io.StringIO()
  saved_argv = sys.argv
  sys.argv = cli.resolve_argv(full)
  code, classes, one_line = 0, [], cli._one_line
  cli._one_line = lambda e: classes.append(type(e)) or one_line(e)
  # Warnings as a fresh `python train.py` shows them (DeprecationWarnings hidden), added
  # to stderr, so a stray RuntimeWarning breaks the one-line rule here too.
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('default')
    warnings.simplefilter('ignore', DeprecationWarning)
    try:
      with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        cli.main(full)
    except SystemExit as e:
      code = e.code
    finally:
      sys.argv = saved_argv
      cli._one_line = one_line
      flags.FLAGS.unparse_flags()
  shown = ''.join(
    warnings.formatwarning(w.message, w.category, w.filename, w.lineno) for w in caught
  )
  return code, out.getvalue(), shown + err.getvalue(), classes


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> str:
  """A workdir holding a trained tiny run of configs/default.py (5 float features)."""
  workdir = str(tmp_path_factory.mktemp('trained') / 'run')
  code, _, err, _ = run_cli([*catalogue.TINY, f'--workdir={workdir}'])
  assert code in (0, None), err[-2000:]
  return workdir


def _argv(row: catalogue.Row, tmp: str, trained: str | None) -> list[str]:
  argv = [a.format(tmp=tmp, trained=trained) for a in row.argv]
  if not any(a.startswith('--workdir') for a in argv):
    argv.insert(0, f'--workdir={tmp}/run')
  return argv


def _error_class(name: str) -> type[BaseException]:
  return getattr(errors, name, None) or getattr(builtins, name)


ROWS = {row.id: row for row in catalogue.ROWS}


def test_the_catalogue_is_complete():
  assert len(ROWS) == len(catalogue.ROWS), 'ids repeat'
  assert len(ROWS) >= 60
  surfaces = catalogue.counts()
  readers = ['.npz', '.jsonl', 'CoNLL-U', 'CoNLL columns', 'TSV', 'raw text', 'wav', 'CSV']
  assert all(surfaces.get(s, 0) >= 2 for s in readers), surfaces
  for row in catalogue.ROWS:
    assert (row.argv is None) != (row.call is None), row.id
    if row.error == 'usage':  # flags or a config file that would not load: no RunError
      assert row.argv is not None, row.id
    elif row.error != 'warning':
      assert issubclass(_error_class(row.error), Exception), row.id
    re.compile(row.message)


def _params():
  for row in catalogue.ROWS:
    marks = [pytest.mark.subprocess] if row.subprocess else []
    yield pytest.param(row.id, marks=marks, id=row.id)


@pytest.mark.parametrize('row_id', list(_params()))
def test_bad_input(row_id, tmp_path, request):
  row = ROWS[row_id]
  tmp = str(tmp_path)
  fx.write_files(tmp, row.files)
  if row.call is not None:
    if row.error == 'warning':
      found = row.call(tmp)
      assert any(re.search(row.message, w) for w in found), found
      return
    with pytest.raises(_error_class(row.error)) as info:
      row.call(tmp)
    assert re.search(row.message, str(info.value)), str(info.value)
    return
  trained = request.getfixturevalue('trained') if any('{trained}' in a for a in row.argv) else None
  argv = _argv(row, tmp, trained)
  if row.subprocess:
    out = subprocess.run(
      [sys.executable, 'train.py', *QUIET, *argv],
      cwd=ROOT,
      capture_output=True,
      text=True,
      timeout=300,
    )
    code, err, classes = out.returncode, out.stderr, None
  else:
    code, _, err, classes = run_cli(argv)
  assert code == 1, (code, err[-3000:])
  if classes is not None:  # the class the row names is the one the command line caught
    if row.error == 'usage':
      assert not any(issubclass(c, errors.RunError) for c in classes), classes
    else:
      assert classes and issubclass(classes[-1], _error_class(row.error)), classes
  if '--traceback' in argv:
    assert 'Traceback (most recent call last)' in err and re.search(row.message, err), err
    return
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('Error: '), err[-3000:]
  assert 'Traceback' not in err
  assert re.search(row.message, lines[0]), lines[0]
  if not any(name.startswith('run/') for name in row.files):
    assert not os.path.exists(os.path.join(tmp, 'run')), 'a run that failed left a workdir'


def test_the_readme_shows_the_catalogue():
  """The catalogue as docs/guides/reliability.md shows it (the README links there)."""
  with open(os.path.join(ROOT, CATALOGUE_PAGE)) as f:
    page = f.read()
  assert MARKERS[0] in page and MARKERS[1] in page, (
    f'{CATALOGUE_PAGE} lost its {MARKERS[0]} ... {MARKERS[1]} section: put the output of '
    'python -m tests.bad_input_catalogue back between them.'
  )
  shown = page.split(MARKERS[0], 1)[1].split(MARKERS[1], 1)[0]
  assert shown.strip() == catalogue.markdown().strip(), (
    f'{CATALOGUE_PAGE} is out of date: paste the output of python -m tests.bad_input_catalogue '
    'between the markers.'
  )
  assert f'{len(catalogue.ROWS)} rows' in page, f'{CATALOGUE_PAGE}: the row count it states'
