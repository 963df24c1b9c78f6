"""Every Python block of README.md and docs/**/*.md runs, or says in itself why not (issue 33).

Each page's ```python blocks run in order in one namespace (a later block may use an earlier
one's names, as a reader would), in a fresh temporary directory. A block whose first line
is a `# not run: <reason>` comment (any case) is skipped, and the reason must be there.
Other fences (bash, text) are not run.

Some blocks read what a shell command on the same page makes, such as a trained workdir.
Before such a block runs, a seconds-long stand-in makes it (`ARTEFACTS`): the same command
cut to 10 steps, or the same export call on an untrained model.
"""

from __future__ import annotations

import glob
import os
import re
import textwrap

import pytest

from tests.utils import ROOT

DOCS = glob.glob(os.path.join(ROOT, 'docs', '**', '*.md'), recursive=True)
PAGES = ['README.md'] + sorted(os.path.relpath(p, ROOT) for p in DOCS)
FENCE = re.compile(r'^( *)```(\w*)[^\n]*\n(.*?)^\1```', re.S | re.M)
PYTHON = ('python', 'py', 'python3')
NOT_RUN = re.compile(r'#\s*not run\b[:\s]*(.*)', re.I)


def blocks(page: str) -> list[str]:
  """The page's fenced Python blocks, dedented, in order."""
  with open(os.path.join(ROOT, page)) as f:
    text = f.read()
  return [textwrap.dedent(m[3]) for m in FENCE.finditer(text) if m[2] in PYTHON]


def not_run_reason(block: str) -> str | None:
  """The reason a block gives on its first line for not being run, or None if it runs."""
  match = NOT_RUN.match(block.lstrip('\n').split('\n', 1)[0])
  return None if match is None else match[1].strip()


def _tagging_run() -> None:
  """own-data.md's training command (the default config on train.npz and dev.npz, the
  files the page's first block writes), 10 steps instead of 10 epochs."""
  from bilstm_jax import app
  from configs import default

  cfg = default.get_config()
  cfg.data.task, cfg.data.train, cfg.data.dev = 'tagging', 'train.npz', 'dev.npz'
  cfg.train.num_steps = 10
  app.train_and_evaluate(cfg, 'runs/tagging')


def _default_export() -> None:
  """What `make train` leaves in runs/default/export: the default model's export (its
  parameters untrained, which the blocks do not look at)."""
  import jax

  from bilstm_jax.models import BiLSTMRegressor
  from bilstm_jax.tasks import RegressionTask
  from bilstm_jax.training import export

  model = BiLSTMRegressor(hidden_size=8, output_size=1)
  x = jax.numpy.zeros((1, 3, 5))
  params = model.init(jax.random.key(0), x)['params']
  task = RegressionTask(sizes={'input_size': 5, 'output_size': 1})
  export.export_predict(model, {'params': params}, task, 'runs/default/export')


# A path a block reads -> what makes it, run (once per page) before the first block naming it.
ARTEFACTS = {
  "'runs/tagging'": _tagging_run,
  'runs/default/export/predict.jaxexport': _default_export,
}

RUN = [p for p in PAGES if any(not_run_reason(b) is None for b in blocks(p))]


@pytest.mark.parametrize('page', RUN)
def test_the_python_blocks_of_the_page_run(page, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  scope = {'__name__': '__main__'}
  made = set()
  for i, block in enumerate(blocks(page)):
    if not_run_reason(block) is not None:
      continue
    for needle, make in ARTEFACTS.items():
      if needle in block and needle not in made:
        make()
        made.add(needle)
    exec(compile(block, f'{page} (python block {i})', 'exec'), scope)


def test_every_block_that_is_not_run_says_why():
  for page in PAGES:
    for block in blocks(page):
      reason = not_run_reason(block)
      assert reason is None or len(reason) > 10, f'{page}: a block not run gives no reason'


def test_the_pages_are_found_and_their_blocks_parsed():
  """Guards the collection: a broken pattern would find no blocks, and every test pass."""
  assert 'README.md' in RUN and 'docs/getting-started.md' in RUN
  assert len(PAGES) > 10
  for page in PAGES:
    with open(os.path.join(ROOT, page)) as f:
      fences = len(re.findall(r'^ *```(?:python|py|python3)\b', f.read(), re.M))
    assert len(blocks(page)) == fences, f'{page}: a python block that is not parsed'
