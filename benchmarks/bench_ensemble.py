"""Ensemble throughput: N members as one vmapped program against a Python loop over members.

For each config and member count N, four child processes run one after the other (so each
reports its own peak memory):
  vmap: `ensemble.make_train_steps` (jax.vmap of train_lib.train_steps) on a shared batch,
        K steps per compiled call (`vmap_K`).
  loop: the same members as N separate states, a Python loop over them calling
        a jitted `train_lib.train_step` (`loop_1`: one step per call, the plain baseline)
        or a jitted `train_lib.train_steps` with K steps per call (`loop_K`).
Throughput is model-steps per second (members x optimiser steps / second) from the median
call (vmap) or the median round over all members (loop). Peak memory: the child's maxrss
and XLA's memory analysis of the compiled vmapped program (arguments + outputs + temps).
Each child runs twice: with `runtime.tune_cpu()`, as train.py does, and with JAX's
defaults. Tuning helps vmap (its large per-call buffers are otherwise faulted in again on
every call) and slows a Python loop of tiny calls (synchronous dispatch), so the speedups
compare the best vmap with the best loop of either setting.

  PYTHONPATH=. python benchmarks/bench_ensemble.py            # seed and small, N = 1..256
  PYTHONPATH=. python benchmarks/bench_ensemble.py --quick    # smoke run
Prints a markdown table and writes benchmarks/results/bench_ensemble.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

# name: (batch, time, input features, hidden)
CONFIGS = {'seed': (16, 10, 5, 8), 'small': (32, 50, 32, 64)}
# tuned: bilstm_jax.runtime.tune_cpu() in the child, as train.py runs; default: JAX's own.
RUNTIMES = ('tuned', 'default')
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'bench_ensemble.json')


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--configs', default='seed,small')
  p.add_argument('--members', default='1,4,16,64,256')
  p.add_argument('--steps-per-call', default='seed=10,small=2', help='K per config')
  p.add_argument('--min-time', type=float, default=0.5, help='timed seconds per variant')
  p.add_argument('--impl', default='', help="BiLSTM recurrence ('' = library default)")
  p.add_argument('--runtime', choices=RUNTIMES, default='tuned', help=argparse.SUPPRESS)
  p.add_argument('--quick', action='store_true', help='N = 1, 16; short timings')
  p.add_argument('--json', default=RESULTS)
  p.add_argument('--child', default=None, help=argparse.SUPPRESS)
  p.add_argument('--child-args', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.quick:
    args.members, args.min_time = '1,16', 0.3
  return args


def _maxrss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _timed(fn, min_time: float, min_reps: int = 2, max_reps: int = 50, warmup=None) -> float:
  """Median seconds of `fn()` (which blocks) after one warm-up call (or `warmup()`)."""
  (warmup or fn)()
  times, start = [], time.perf_counter()
  while len(times) < min_reps or (time.perf_counter() - start < min_time and len(times) < max_reps):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  times.sort()
  return times[len(times) // 2]


def child(kind: str, cfg: str, n: int, k: int, min_time: float, impl: str, tuned: bool) -> dict:
  if tuned:  # before JAX starts
    from bilstm_jax import runtime

    runtime.tune_cpu()
  import jax
  import numpy as np

  from bilstm_jax import models
  from bilstm_jax.ensembles import ensemble
  from bilstm_jax.training import loop as train_lib
  from bilstm_jax.training import optim

  b, t, i, h = CONFIGS[cfg]
  rng = np.random.default_rng(0)
  batches = {
    'inputs': rng.standard_normal((k, b, t, i), dtype=np.float32),
    'lengths': np.full((k, b), t, np.int32),
    'targets': rng.standard_normal((k, b, t, 1), dtype=np.float32),
  }
  batches = jax.device_put(batches)
  one_batch = jax.tree.map(lambda x: x[0], batches)
  model = models.BiLSTMRegressor(h, **({'impl': impl} if impl else {}))
  tx = optim.make_optimizer(optim.OptimizerSpec(name='adam', learning_rate=1e-3))
  init_keys, step_keys = ensemble.member_keys(0, n)
  state = ensemble.create_members(init_keys, model, tx, one_batch)
  jax.block_until_ready(state)
  out = {'rss_before_mb': _maxrss_mb()}

  if kind == 'vmap':
    fn = ensemble.make_train_steps()
    t0 = time.perf_counter()
    compiled = fn.lower(state, batches, step_keys, None).compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    holder = [state]

    def call():
      holder[0], sums = compiled(holder[0], batches, step_keys, None)
      jax.block_until_ready(sums)

    sec = _timed(call, min_time, min_reps=1 if n * k * b * t * h >= 2**22 else 2)
    out['vmap_K'] = {
      'model_steps_per_s': n * k / sec,
      'call_ms': sec * 1e3,
      'compile_s': compile_s,
      'xla_mb': (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes)
      / 2**20,
      'xla_temp_mb': mem.temp_size_in_bytes / 2**20,
    }
  else:
    members = [ensemble.get_member(state, m) for m in range(n)]
    del state
    step1 = jax.jit(train_lib.train_step, donate_argnums=0)
    stepk = jax.jit(train_lib.train_steps, donate_argnums=0)
    for steps, fn, data in (('1', step1, one_batch), ('K', stepk, batches)):

      def round_(fn=fn, data=data):
        for m in range(n):
          members[m], metrics = fn(members[m], data, step_keys[m])
        jax.block_until_ready(metrics)

      def compile_(fn=fn, data=data):  # the members share one compiled function
        members[0], metrics = fn(members[0], data, step_keys[0])
        jax.block_until_ready(metrics)

      # Big rounds (N = 256, small) take seconds: one timed round is enough there.
      sec = _timed(round_, min_time, min_reps=1 if n >= 64 else 2, warmup=compile_)
      num = k if steps == 'K' else 1
      out[f'loop_{steps}'] = {'model_steps_per_s': n * num / sec, 'round_ms': sec * 1e3}
  out['maxrss_mb'] = _maxrss_mb()
  return out


def _steps_per_call(spec: str) -> dict[str, int]:
  return {name: int(v) for name, v in (item.split('=') for item in spec.split(','))}


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.child:
    cfg, n, k = args.child_args.split(':')
    res = child(args.child, cfg, int(n), int(k), args.min_time, args.impl, args.runtime == 'tuned')
    with open(args.json, 'w') as f:
      json.dump(res, f)
    return

  ks = _steps_per_call(args.steps_per_call)
  rows = []
  start = time.perf_counter()
  for cfg in args.configs.split(','):
    for n in (int(x) for x in args.members.split(',')):
      row = {'config': cfg, 'members': n, 'steps_per_call': ks[cfg]}
      for kind in ('vmap', 'loop'):
        for runtime in RUNTIMES:
          with tempfile.NamedTemporaryFile(suffix='.json') as tmp:
            cmd = [sys.executable, os.path.abspath(__file__), '--child', kind]
            cmd += ['--child-args', f'{cfg}:{n}:{ks[cfg]}', '--json', tmp.name]
            cmd += ['--min-time', str(args.min_time), '--impl', args.impl]
            cmd += ['--runtime', runtime]
            subprocess.run(cmd, check=True, timeout=600)
            with open(tmp.name) as f:
              res = json.load(f)
          row[f'{kind}_{runtime}_maxrss_mb'] = res.pop('maxrss_mb')
          row[f'{kind}_{runtime}_rss_before_mb'] = res.pop('rss_before_mb')
          row.update({f'{name}_{runtime}': v for name, v in res.items()})
      best = {
        v: max(row[f'{v}_{r}']['model_steps_per_s'] for r in RUNTIMES)
        for v in ('vmap_K', 'loop_1', 'loop_K')
      }
      row['speedup_vs_loop_1'] = best['vmap_K'] / best['loop_1']
      row['speedup_vs_loop_K'] = best['vmap_K'] / best['loop_K']
      rows.append(row)
      print(
        f'{cfg} N={n}: best vmap_K {best["vmap_K"]:.0f}/s  loop_1 {best["loop_1"]:.0f}/s  '
        f'loop_K {best["loop_K"]:.0f}/s  ({time.perf_counter() - start:.0f} s)',
        flush=True,
      )

  header = (
    '| config | N | vmap K tuned | vmap K default | loop 1 tuned | loop 1 default '
    '| loop K tuned | loop K default | best vmap / best loop_1 | best vmap / best loop_K '
    '| vmap peak RSS MB | vmap XLA MB | loop peak RSS MB |'
  )
  print('\nModel-steps per second (members x steps / s); K = steps per compiled call;')
  print('tuned = runtime.tune_cpu(), as train.py runs; default = JAX as it starts.\n')
  print(header)
  print('|' + '---|' * header.count(' | ') + '---|')
  for r in rows:
    vals = [
      r[f'{v}_{rt}']['model_steps_per_s'] for v in ('vmap_K', 'loop_1', 'loop_K') for rt in RUNTIMES
    ]
    print(
      f'| {r["config"]} (K={r["steps_per_call"]}) | {r["members"]} | '
      + ' | '.join(f'{v:,.0f}' for v in vals)
      + f' | {r["speedup_vs_loop_1"]:.1f}x | {r["speedup_vs_loop_K"]:.1f}x'
      + f' | {r["vmap_tuned_maxrss_mb"]:.0f} | {r["vmap_K_tuned"]["xla_mb"]:.1f}'
      + f' | {r["loop_tuned_maxrss_mb"]:.0f} |'
    )
  import jax

  result = {
    'configs': {
      c: dict(zip(('batch', 'time', 'input', 'hidden'), CONFIGS[c], strict=True))
      for c in args.configs.split(',')
    },
    'rows': rows,
    'impl': args.impl or 'library default',
    'jax': jax.__version__,
    'cpu_count': os.cpu_count(),
    'machine': platform.machine(),
    'load_avg_at_end': os.getloadavg(),
    'wall_s': time.perf_counter() - start,
  }
  os.makedirs(os.path.dirname(args.json), exist_ok=True)
  with open(args.json, 'w') as f:
    json.dump(result, f, indent=2)
  print(f'\nwrote {args.json} ({result["wall_s"]:.0f} s)')


if __name__ == '__main__':
  main()
