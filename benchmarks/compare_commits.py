"""Nothing slower: this checkout against an earlier commit, measured side by side in one run.

Checks the earlier commit out into a temporary git worktree and, alternating the two trees
round by round (so drifting machine load hits both alike), runs in each:

  text     its own `benchmarks/bench_text.py` (bilstm_jax tokens/s per model, same batches);
  default  its own `train.py --config=default` (the tutorial run): wall seconds of the
           whole command and the run's own `train_wall_s` and steps/s from summary.json.

Each tree imports its own package (PYTHONPATH), so each measures its own code. Ratios are
this checkout over the base; > 1 is faster for throughput, < 1 for seconds.

  python benchmarks/compare_commits.py --base 6dba99e [--rounds 5] [--steps 20] [--models pos,ner]

Prints a table and writes benchmarks/results/vs_commit.json (`--output`).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def _git(*args: str, cwd: str = ROOT) -> str:
  return subprocess.run(['git', *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


def _run(tree: str, args: list[str]) -> float:
  """Runs a command in `tree` with that tree's package first on the path; wall seconds."""
  env = {**os.environ, 'PYTHONPATH': tree}
  start = time.perf_counter()
  proc = subprocess.run(args, cwd=tree, env=env, capture_output=True, text=True)
  if proc.returncode:
    sys.exit(f'Error: {" ".join(args)} in {tree} failed:\n{proc.stderr[-2000:]}')
  return time.perf_counter() - start


def text_speed(tree: str, steps: int, models: str) -> dict:
  """{model: bilstm_jax tokens/s} from the tree's own bench_text.py (bucketed batches)."""
  name = f'vs_commit_text_{os.getpid()}.json'
  script = os.path.join(tree, 'benchmarks', 'bench_text.py')
  args = [sys.executable, script, '--steps', str(steps), '--rounds', '1']
  args += ['--models', models, '--batching', 'buckets']
  with open(script) as f:
    if "'--output'" in f.read():
      args += ['--output', name]
    else:  # older trees always write text.json; the base tree is a scratch worktree
      name = 'text.json'
  _run(tree, args)
  path = os.path.join(tree, 'benchmarks', 'results', name)
  with open(path) as f:
    out = json.load(f)['results']['buckets']
  os.remove(path)
  return {m: r['bilstm_jax']['tokens_per_s'] for m, r in out.items()}


def default_run(tree: str) -> dict:
  """The default config's command: its wall seconds and the run's own figures."""
  with tempfile.TemporaryDirectory() as workdir:
    wall = _run(tree, [sys.executable, 'train.py', '--config=default', f'--workdir={workdir}'])
    with open(os.path.join(workdir, 'summary.json')) as f:
      summary = json.load(f)
  return {
    'command_s': wall,
    'train_wall_s': summary['train_wall_s'],
    'steps_per_s': summary['steps_per_s'],
    **{k: v for k, v in summary.items() if k.startswith('final_dev_')},
  }


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--base', required=True, help='the earlier commit')
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--models', default='pos,ner,ner_glove')
  parser.add_argument('--output', default='vs_commit.json', help='file in benchmarks/results')
  args = parser.parse_args()
  base = _git('rev-parse', args.base).strip()
  head = _git('rev-parse', 'HEAD').strip()
  dirty = bool(_git('status', '--porcelain', '--untracked-files=no').strip())
  scratch = tempfile.mkdtemp(prefix='bilstm_base_')
  tree = os.path.join(scratch, 'tree')
  _git('worktree', 'add', '--detach', tree, base)
  samples = {'head': [], 'base': []}
  try:
    for r in range(args.rounds):
      for label, where in (('base', tree), ('head', ROOT))[:: 1 if r % 2 == 0 else -1]:
        sample = {'text': text_speed(where, args.steps, args.models), 'default': default_run(where)}
        samples[label].append(sample)
        print(f'round {r + 1} {label}: {json.dumps(sample)}', flush=True)
  finally:
    _git('worktree', 'remove', '--force', tree)
    os.rmdir(scratch)

  def median(label, *keys):
    values = []
    for s in samples[label]:
      for k in keys:
        s = s[k]
      values.append(s)
    return statistics.median(values)

  rows = [(f'text {m} tokens/s', ('text', m), True) for m in args.models.split(',')]
  rows += [
    ('default steps/s', ('default', 'steps_per_s'), True),
    ('default train_wall_s', ('default', 'train_wall_s'), False),
    ('default command s', ('default', 'command_s'), False),
  ]
  table = []
  print(f'\n{"measure":28s} {"base " + base[:7]:>14s} {"head " + head[:7]:>14s} {"ratio":>7s}')
  for name, keys, higher_better in rows:
    b, h = median('base', *keys), median('head', *keys)
    ratio = h / b if higher_better else b / h  # > 1: head is faster
    table.append({'measure': name, 'base': b, 'head': h, 'head_speedup': ratio})
    print(f'{name:28s} {b:14.3f} {h:14.3f} {ratio:6.3f}x')
  out = {
    'base': base,
    'head': head,
    'head_has_uncommitted_changes': dirty,
    'rounds': args.rounds,
    'steps': args.steps,
    'load_average': os.getloadavg(),
    'table': table,
    'samples': samples,
  }
  path = os.path.join(HERE, 'results', args.output)
  with open(path, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'\nwrote {path} (ratio > 1: head faster; medians of {args.rounds} rounds)')


if __name__ == '__main__':
  main()
