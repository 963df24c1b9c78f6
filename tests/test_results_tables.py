"""The results tables in the docs are the ones their JSON gives (no figure copied by hand).

`benchmarks/text_results.py` writes `benchmarks/results/text_test.json` from the runs and
renders its table; the docs page shows that table between markers. A figure edited in the
page, or a JSON regenerated without updating the page, fails here.
"""

import importlib.util
import json
import os

from tests.utils import ROOT

MARKERS = ('<!-- text-results:start -->', '<!-- text-results:end -->')
PAGE = os.path.join(ROOT, 'docs', 'guides', 'text.md')


def _module():
  path = os.path.join(ROOT, 'benchmarks', 'text_results.py')
  spec = importlib.util.spec_from_file_location('text_results', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _shown(path: str) -> str:
  with open(path) as f:
    text = f.read()
  assert MARKERS[0] in text and MARKERS[1] in text, f'{path} lost its {MARKERS} section'
  return text.split(MARKERS[0], 1)[1].split(MARKERS[1], 1)[0].strip()


def test_the_text_results_page_shows_the_table_its_json_gives():
  with open(os.path.join(ROOT, 'benchmarks', 'results', 'text_test.json')) as f:
    rows = json.load(f)['rows']
  assert _shown(PAGE) == _module().render(rows), (
    f'{PAGE} differs from benchmarks/results/text_test.json: paste the output of '
    'python benchmarks/text_results.py between its markers (--paste does it).'
  )


def test_the_readme_shows_the_summary_its_json_gives():
  with open(os.path.join(ROOT, 'benchmarks', 'results', 'text_test.json')) as f:
    rows = json.load(f)['rows']
  assert _shown(os.path.join(ROOT, 'README.md')) == _module().render_summary(rows), (
    'README.md differs from benchmarks/results/text_test.json: run '
    'python benchmarks/text_results.py --paste.'
  )


def test_every_test_figure_has_its_logged_scoring():
  """Each test figure in the table comes from a line of the committed test-score log."""
  with open(os.path.join(ROOT, 'benchmarks', 'results', 'text_test.json')) as f:
    rows = json.load(f)['rows']
  with open(os.path.join(ROOT, 'benchmarks', 'results', 'test_scores.jsonl')) as f:
    log = [json.loads(line) for line in f if line.strip()]
  for row in rows:
    for seed, value in row['test_by_seed'].items():
      lines = [x for x in log if x['workdir'] == f'{row["name"]}_s{seed}']
      assert lines, f'{row["name"]} seed {seed}: no logged test scoring'
      assert round(100 * lines[-1][row['metric']], 2) == value
