"""The README's text results: dev and official test, mean and spread over seeds, from runs.

Each row is one shipped command (a config or a variant, no extra flags) trained with seeds
0, 1 and 2 into `RUNS/<name>_s<seed>`, then scored once on the config's official test split
(`--mode=evaluate --config.data.test=test`, which appends the scoring to the workdir's
`test_scores.jsonl`). This script reads, per workdir:

  dev    the best dev figure of `metrics.jsonl` (the checkpoint that `train.metric` ranks
         first, which `--mode=evaluate` reproduces)
  test   the workdir's `test_scores.jsonl` (every line: a run scored twice is reported)
  wall   the training steps' time (each evaluation window's steps over its rate in
         `metrics.jsonl`; the evaluations themselves are left out)

and writes `benchmarks/results/text_test.json`, every test scoring it used to
`benchmarks/results/test_scores.jsonl` (one line each, with its workdir; scorings of
experiment workdirs, `RUNS/x_*`, whose recipe was later replaced, are kept there too,
marked `superseded`), and a markdown table on stdout.

  python benchmarks/text_results.py [--runs runs] [--paste]

`--paste` writes the tables between the markers of docs/guides/text.md (the full table)
and README.md (one line per task); tests/test_results_tables.py checks both against the
JSON.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MARKERS = ('<!-- text-results:start -->', '<!-- text-results:end -->')
SEEDS = (0, 1, 2)

# (name, task, vectors, command, metric, goal): the goal is issue 32's, on the mean test
# figure, or on dev where the test set is scored outside the project (`GOAL_ON_DEV`).
ROWS = [
  ('ud', 'UD EWT UPOS accuracy', 'from scratch', '--config=pos_ud', 'accuracy', 95.5),
  ('ud_glove', 'UD EWT UPOS accuracy', 'GloVe 6B 50d', '--config=configs/pos_ud.py:glove',
   'accuracy', 96.0),
  ('conll', 'CoNLL-2003 F1', 'from scratch', '--config=ner_conll2003', 'f1', 86.0),
  ('conll_glove', 'CoNLL-2003 F1', 'GloVe 6B 50d', '--config=configs/ner_conll2003.py:glove',
   'f1', 90.0),
  ('sst2', 'SST-2 accuracy', 'from scratch', '--config=sst2', 'accuracy', 86.0),
  ('sst2_glove', 'SST-2 accuracy', 'GloVe 6B 50d', '--config=configs/sst2.py:glove',
   'accuracy', 87.0),
  ('wnut_glove', 'WNUT-17 entity F1', 'GloVe 6B 50d', '--config=configs/ner_wnut17.py:glove',
   'f1', 40.0),
]  # fmt: skip
GOAL_ON_DEV = ('wnut_glove',)  # WNUT-17's test set is kept outside the project


def _events(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


def read_run(workdir: str, metric: str) -> dict | None:
  """{'dev', 'epoch', 'wall_s', 'tests': [test lines]} of a finished run, or None."""
  if not os.path.exists(os.path.join(workdir, 'summary.json')):
    return None
  events = _events(workdir)
  evals = [e for e in events if e.get('event') == 'eval' and f'dev_{metric}' in e]
  best = max(evals, key=lambda e: e[f'dev_{metric}'])  # first of equals, as the ranking
  # Training time from each evaluation window's steps and rate (evaluations left out): a
  # run finished by a second process (after a crash at its very end) keeps its time.
  steps = [e for e in events if e.get('event') == 'eval' and e.get('steps_per_s')]
  wall = sum(
    (b['step'] - a['step']) / b['steps_per_s']
    for a, b in zip([{'step': 0}, *steps[:-1]], steps, strict=True)
  )
  tests = []
  path = os.path.join(workdir, 'test_scores.jsonl')
  if os.path.exists(path):
    with open(path) as f:
      tests = [json.loads(line) for line in f if line.strip()]
  return {'dev': best[f'dev_{metric}'], 'epoch': best['epoch'], 'wall_s': wall, 'tests': tests}


def _stat(values: list[float]) -> dict | None:
  if not values:
    return None
  v = 100 * np.asarray(values)
  return {'mean': float(v.mean()), 'std': float(v.std(ddof=1)) if len(v) > 1 else 0.0,
          'values': [round(float(x), 2) for x in v]}  # fmt: skip


def _cell(stat: dict | None, n: int) -> str:
  if stat is None:
    return 'not run'
  if len(stat['values']) == 1:
    return f'{stat["values"][0]:.2f} (1 seed)'
  more = f', {len(stat["values"])} of {n} seeds' if len(stat['values']) < n else ''
  return f'{stat["mean"]:.2f} ± {stat["std"]:.2f}{more}'


def _goal(r: dict) -> str:
  stat = r[r['goal_on']]
  if stat is None:
    return f'{r["goal_on"]} >= {r["goal"]}: not measured'
  met = 'met' if stat['mean'] >= r['goal'] else f'missed by {r["goal"] - stat["mean"]:.2f}'
  return f'{r["goal_on"]} >= {r["goal"]}: {met}'


def render(rows: list[dict]) -> str:
  """The markdown table of `text_test.json`'s rows (what the docs show between markers)."""
  lines = [
    '| task | vectors | command | dev | test | goal (issue 32) | training per run (s) |',
    '|---|---|---|---|---|---|---|',
  ]
  for r in rows:
    walls = ', '.join(str(w) for w in r['wall_s'].values()) or '-'
    test = 'scored outside the project' if r['goal_on'] == 'dev' else _cell(r['test'], len(SEEDS))
    lines.append(
      f'| {r["task"]} | {r["group"]} | `{r["command"]}` | {_cell(r["dev"], len(SEEDS))} | '
      f'{test} | {_goal(r)} | {walls} |'
    )
  return '\n'.join(lines)


def render_summary(rows: list[dict]) -> str:
  """The README's short text table: one line per task, test means (dev where test is
  scored outside the project), from scratch and with GloVe."""
  by = {(r['task'], r['group']): r for r in rows}
  tasks = list(dict.fromkeys(r['task'] for r in rows))
  lines = [
    '| text task | from scratch | with GloVe 6B 50d | full table |',
    '|---|---|---|---|',
  ]

  def cell(r):
    if r is None:
      return '-'
    stat = r[r['goal_on']]
    if stat is None:
      return 'not measured'
    n = len(stat['values'])
    return f'{stat["mean"]:.2f} {r["goal_on"]} ({n} seed{"s" if n > 1 else ""})'

  for task in tasks:
    scratch, glove = by.get((task, 'from scratch')), by.get((task, 'GloVe 6B 50d'))
    lines.append(
      f'| {task} | {cell(scratch)} | {cell(glove)} | [text](docs/guides/text.md#results) |'
    )
  return '\n'.join(lines)


def paste(path: str, table: str) -> None:
  """Replaces what lies between `MARKERS` in `path` with `table`."""
  with open(path) as f:
    text = f.read()
  head, rest = text.split(MARKERS[0], 1)
  _, tail = rest.split(MARKERS[1], 1)
  with open(path, 'w') as f:
    f.write(f'{head}{MARKERS[0]}\n{table}\n{MARKERS[1]}{tail}')


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--runs', default='runs')
  parser.add_argument('--paste', action='store_true', help='update the docs and README tables')
  args = parser.parse_args()
  rows, log = [], []
  for name, task, group, command, metric, goal in ROWS:
    runs = {s: read_run(os.path.join(args.runs, f'{name}_s{s}'), metric) for s in SEEDS}
    done = {s: r for s, r in runs.items() if r is not None}
    tests = {s: r['tests'][-1][metric] for s, r in done.items() if r['tests']}
    for s, r in done.items():
      log += [dict(line, workdir=f'{name}_s{s}') for line in r['tests']]
    rows.append({
      'name': name, 'task': task, 'group': group, 'command': f'python train.py {command}',
      'metric': metric, 'seeds': sorted(done), 'goal': goal,
      'goal_on': 'dev' if name in GOAL_ON_DEV else 'test',
      'dev': _stat([done[s]['dev'] for s in sorted(done)]),
      'test': _stat([tests[s] for s in sorted(tests)]),
      'test_by_seed': {s: round(100 * v, 2) for s, v in tests.items()},
      'test_scorings': {s: len(r['tests']) for s, r in done.items()},
      'best_epoch': {s: r['epoch'] for s, r in done.items()},
      'wall_s': {s: round(r['wall_s']) for s, r in done.items() if r['wall_s']},
    })  # fmt: skip
  # Experiments (`x_*` workdirs) are not table rows; any test scoring one got is kept too.
  for name in sorted(os.listdir(args.runs)) if os.path.isdir(args.runs) else []:
    path = os.path.join(args.runs, name, 'test_scores.jsonl')
    if name.startswith('x_') and os.path.exists(path):
      with open(path) as f:
        log += [dict(json.loads(x), workdir=name, superseded=True) for x in f if x.strip()]
  os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
  with open(os.path.join(HERE, 'results', 'text_test.json'), 'w') as f:
    json.dump({'seeds': list(SEEDS), 'rows': rows}, f, indent=2)
  with open(os.path.join(HERE, 'results', 'test_scores.jsonl'), 'w') as f:
    f.writelines(json.dumps(line, sort_keys=True) + '\n' for line in log)
  print(render(rows))
  if args.paste:
    paste(os.path.join(ROOT, 'docs', 'guides', 'text.md'), render(rows))
    paste(os.path.join(ROOT, 'README.md'), render_summary(rows))


if __name__ == '__main__':
  main()
