"""Faults: a training run SIGKILLed at many moments, a damaged checkpoint, a full disk.

1. Kills: one training run (the default config's tiny variant below) is SIGKILLed again
   and again and resumed each time, until it has been killed at least `--kills` times:
   at random wall-clock moments, and inside each phase (a compiled training call, the
   dev evaluation, a checkpoint save, the export, a plot) through the test hook
   `BILSTM_JAX_FAULT=phase:n:delay_s` (`bilstm_jax/faults.py`): killed `delay_s` after
   entering its n-th `phase`. Its final parameters are compared bit for bit with an
   uninterrupted run's.
2. Damage: the finished run's newest checkpoint gets its data files truncated; the rerun
   must warn naming it, fall back to the previous one and end with the same parameters.
3. Full disk (root only: a 360 KiB tmpfs): the run must stop with one `Error:` line naming
   the checkpoint, keep the last good one loadable, and finish identically once the disk
   has room.

  python benchmarks/faults.py [--kills 24] [--epochs 16] [--seed 0]

Prints a table and writes benchmarks/results/faults.json.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np

import bilstm_jax
from bilstm_jax import faults

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # for tests.utils
# The longest delay into each phase: under its typical length here (a 2-step call and an
# evaluation take milliseconds, a save tens, the export and a plot hundreds).
MAX_DELAY_S = {'step': 0.002, 'eval': 0.002, 'save': 0.02, 'export': 0.2, 'plot': 0.1}
TRAINING_PHASES = ('step', 'eval', 'save', 'random')
FINISH_PHASES = ('export', 'plot')


def command(workdir: str, epochs: int) -> list[str]:
  from tests.utils import TINY  # the tests' tiny variant: 4 steps an epoch, a save every 2

  flags = [f'--config.{k}={v}' for k, v in {**TINY, 'train.epochs': epochs}.items()]
  return [
    sys.executable,
    'train.py',
    '--config',
    'configs/default.py',
    '--workdir',
    workdir,
    *flags,
  ]


def start(workdir: str, epochs: int, fault: str | None = None) -> subprocess.Popen:
  env = {k: v for k, v in os.environ.items() if k != faults.ENV}
  env['PYTHONPATH'] = ROOT
  if fault:
    env[faults.ENV] = fault
  return subprocess.Popen(
    command(workdir, epochs),
    cwd=ROOT,
    env=env,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.PIPE,
    text=True,
  )


def latest(workdir: str) -> int:
  """The newest complete checkpoint's step (0: none)."""
  path = os.path.join(workdir, 'checkpoints')
  steps = [int(n) for n in os.listdir(path) if n.isdigit()] if os.path.isdir(path) else []
  return max(steps, default=0)


def events(workdir: str) -> list[dict]:
  path = os.path.join(workdir, 'metrics.jsonl')
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def params(workdir: str):
  return bilstm_jax.load(workdir, 'latest').state.params


def same(a, b) -> bool:
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  return len(leaves_a) == len(leaves_b) and all(
    np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(leaves_a, leaves_b, strict=True)
  )


def starts(workdir: str) -> int:
  return sum(e['event'] in ('start', 'resume') for e in events(workdir))


def wait_for_start(workdir: str, proc: subprocess.Popen, since: int | None = None) -> bool:
  """Waits until `proc` has logged its start or resume (its training begins)."""
  since = starts(workdir) if since is None else since
  while proc.poll() is None:
    try:
      if starts(workdir) > since:
        return True
    except (OSError, ValueError):  # metrics.jsonl being rewritten
      pass
    time.sleep(0.005)
  return False


def attempt(workdir: str, epochs: int, phase: str, rng: random.Random, wall_s: float) -> dict:
  """One start of the run, SIGKILLed in `phase` (or at a random moment); what happened."""
  # Counted, not sliced: a resumed run drops the events logged after its checkpoint.
  before, seen = latest(workdir), sum(e['event'] == 'resume' for e in events(workdir))
  if phase == 'random':
    proc = start(workdir, epochs)
    # At a random moment of the first fifth of its training (after its start-up).
    started = wait_for_start(workdir, proc)
    when = rng.uniform(0.0, wall_s / 5)
    try:
      proc.wait(timeout=when)
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGKILL)
    spec = f'at {when:.2f} s' + ('' if started else ' (ended first)')
  else:
    nth = 1 if phase in FINISH_PHASES else rng.choice((1, 1, 2))
    nth = rng.choice((1, 2)) if phase == 'plot' else nth  # 2: the loss curve, after the run
    spec = f'{phase}:{nth}:{rng.uniform(0.0, MAX_DELAY_S[phase]):.4f}'
    proc = start(workdir, epochs, spec)
  err = proc.communicate(timeout=600)[1]
  resumed = [e['step'] for e in events(workdir) if e['event'] == 'resume'][seen:]
  return {
    'phase': phase,
    'fault': spec,
    'killed': proc.returncode == -signal.SIGKILL,
    'returncode': proc.returncode,
    'checkpoint_before': before,
    'checkpoint_after': latest(workdir),
    # The process logged its resume from the checkpoint it found (None: killed before).
    'resumed_from': resumed[0] if resumed else None,
    'resume_ok': (resumed[0] == before) if resumed else None,
    'error': err.strip().splitlines()[-1] if proc.returncode not in (0, -9) and err else None,
  }


def kills(workdir: str, epochs: int, total: int, rng: random.Random, wall_s: float) -> list:
  """Kills the run `total` times or more (each phase at least total // 6).

  The training phases come first; a kill there advances the run by a checkpoint at most
  (a random one by more), so the run has many more checkpoints than there are kills.
  """
  quota = max(1, total // 6)
  total_steps = 4 * epochs
  rows, count = [], dict.fromkeys(TRAINING_PHASES + FINISH_PHASES, 0)

  def short(phases):
    return [p for p in phases if count[p] < quota]

  while short(TRAINING_PHASES) or short(FINISH_PHASES) or sum(count.values()) < total:
    training = short(TRAINING_PHASES) or (not short(FINISH_PHASES) and rng.random() < 0.6)
    if training and latest(workdir) >= total_steps:
      if short(TRAINING_PHASES):
        raise SystemExit(f'the run finished before {short(TRAINING_PHASES)} had {quota} kills')
      training = False
    pool = short(TRAINING_PHASES) or TRAINING_PHASES if training else FINISH_PHASES
    phase = rng.choice(short(pool) or pool)
    row = attempt(workdir, epochs, phase, rng, wall_s)
    rows.append(row)
    print(
      f'{len(rows):3d}  {row["fault"]:<22} killed={row["killed"]!s:<5} '
      f'ckpt {row["checkpoint_before"]:3d} -> {row["checkpoint_after"]:3d}  '
      f'resumed_from={row["resumed_from"]}',
      flush=True,
    )
    if row['returncode'] not in (0, -signal.SIGKILL):
      raise SystemExit(f'the run failed: {row["error"]}')
    count[phase] += row['killed']
  return rows


def damaged(workdir: str, epochs: int, reference) -> dict:
  """Truncates the finished run's newest checkpoint; reruns; same params?"""
  newest = latest(workdir)
  for path in glob.glob(os.path.join(workdir, 'checkpoints', str(newest), '*', '**', 'd', '*')):
    os.truncate(path, 7)
  proc = start(workdir, epochs)
  err = proc.communicate(timeout=600)[1]
  warned = [line for line in err.splitlines() if line.startswith('Warning: checkpoint')]
  resumed = [e['step'] for e in events(workdir) if e['event'] == 'resume'][-1]
  return {
    'truncated_checkpoint': newest,
    'returncode': proc.returncode,
    'warning': warned[0] if warned else None,
    'resumed_from': resumed,
    'identical_params': proc.returncode == 0 and same(params(workdir), reference),
  }


def full_disk(epochs: int, reference) -> dict:
  """A run on a 360 KiB tmpfs (root only), then with room to finish."""
  if os.geteuid() != 0:
    return {'skipped': 'needs root to mount a tmpfs'}
  mount = tempfile.mkdtemp(prefix='faults_tmpfs_')
  if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=360k', 'tmpfs', mount]).returncode:
    return {'skipped': 'mount -t tmpfs failed'}
  try:
    workdir = os.path.join(mount, 'run')
    proc = start(workdir, epochs)
    err = proc.communicate(timeout=600)[1]
    line = err.strip().splitlines()[-1] if err.strip() else ''
    kept = latest(workdir)
    loadable = same(params(workdir), params(workdir)) if kept else False
    subprocess.run(['mount', '-o', 'remount,size=64m', mount], check=True)
    again = start(workdir, epochs)
    again.communicate(timeout=600)
    return {
      'returncode': proc.returncode,
      'error_line': line,
      'last_good_checkpoint': kept,
      'last_good_loadable': loadable,
      'resumed_returncode': again.returncode,
      'identical_params': again.returncode == 0 and same(params(workdir), reference),
    }
  finally:
    subprocess.run(['umount', mount])
    os.rmdir(mount)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--kills', type=int, default=24)
  parser.add_argument('--epochs', type=int, default=16)
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()
  rng = random.Random(args.seed)
  out = {'command': ' '.join(['python', *sys.argv]), 'train_command': None}
  with tempfile.TemporaryDirectory(prefix='faults_') as tmp:
    ref_dir, run_dir = os.path.join(tmp, 'reference'), os.path.join(tmp, 'killed')
    out['train_command'] = ' '.join(command('WORKDIR', args.epochs)[1:])
    proc = start(ref_dir, args.epochs)
    wait_for_start(ref_dir, proc, since=0)
    start_s = time.perf_counter()
    err = proc.communicate(timeout=600)[1]
    wall_s = time.perf_counter() - start_s  # its training and outputs, without start-up
    if proc.returncode:
      raise SystemExit(err[-3000:])
    reference = params(ref_dir)
    t0 = time.perf_counter()
    rows = kills(run_dir, args.epochs, args.kills, rng, wall_s)
    final = start(run_dir, args.epochs)
    final.communicate(timeout=600)
    identical = final.returncode == 0 and same(params(run_dir), reference)
    per_phase = {}
    for row in rows:
      if row['killed']:
        per_phase[row['phase']] = per_phase.get(row['phase'], 0) + 1
    out.update(
      reference_train_wall_s=round(wall_s, 2),
      kills=sum(r['killed'] for r in rows),
      attempts=len(rows),
      kills_per_phase=per_phase,
      resumes_logged=sum(r['resume_ok'] is not None for r in rows),
      resumes_from_the_newest_checkpoint=sum(bool(r['resume_ok']) for r in rows),
      final_identical_params=identical,
      kill_wall_s=round(time.perf_counter() - t0, 1),
      rows=rows,
    )
    out['damaged_checkpoint'] = damaged(run_dir, args.epochs, reference)
    out['full_disk'] = full_disk(args.epochs, reference)
    shutil.rmtree(run_dir, ignore_errors=True)
  print()
  print(f'{"phase":<8} {"kills":>5}')
  for phase in TRAINING_PHASES + FINISH_PHASES:
    print(f'{phase:<8} {per_phase.get(phase, 0):>5}')
  print(f'{"total":<8} {out["kills"]:>5}   final params bit-identical: {identical}')
  print(f'damaged checkpoint: {out["damaged_checkpoint"]}')
  print(f'full disk: {out["full_disk"]}')
  path = os.path.join(HERE, 'results', 'faults.json')
  with open(path, 'w') as f:
    json.dump(out, f, indent=2)
  print(f'wrote {path}')


if __name__ == '__main__':
  main()
