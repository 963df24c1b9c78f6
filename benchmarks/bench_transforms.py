"""What each layer costs under JAX's transformations: forward, grad, jvp, Hessian-vector.

One-layer bidirectional BiLSTM, float32, `runtime.tune_cpu()` as train.py runs. For each
config and `impl` ('native' on a CPU, 'fused', 'reference'), four jitted programs of the
loss sum(y**2) as a function of the parameters:
  forward  the loss alone
  grad     jax.grad (reverse mode: the hand-written backward pass for native and fused)
  jvp      jax.jvp (forward mode: the tangent recurrence, a lax.scan, for native and fused)
  hvp      jax.jvp of jax.grad (second order: the lax.scan versions differentiated)
All programs are timed round-robin (one call each in turn, repeated), so noise hits them
alike. Prints a markdown table of median milliseconds and writes
benchmarks/results/bench_transforms.json.

  PYTHONPATH=. python benchmarks/bench_transforms.py [--configs small,medium] [--reps 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from bench_bilstm import CONFIGS  # noqa: E402

from bilstm_jax import BiLSTM, runtime
from bilstm_jax.nn import native

RESULTS = os.path.join(
  os.path.dirname(os.path.abspath(__file__)), 'results', 'bench_transforms.json'
)
PROGRAMS = ('forward', 'grad', 'jvp', 'hvp')


def programs(cfg, impl):
  """{program: (compiled, args)} for one config and impl."""
  b, t, i, h, layers = cfg
  x = jax.random.normal(jax.random.key(0), (b, t, i))
  model = BiLSTM(h, num_layers=layers, impl=impl)
  params = BiLSTM(h, num_layers=layers, impl='reference').init(jax.random.key(1), x)
  tangent = jax.tree.map(lambda a: jnp.full_like(a, 0.01), params)

  def loss(p, x):
    return jnp.sum(model.apply(p, x)[0] ** 2)

  fns = {
    'forward': (loss, (params, x)),
    'grad': (jax.grad(loss), (params, x)),
    'jvp': (lambda p, x, t: jax.jvp(lambda p: loss(p, x), (p,), (t,)), (params, x, tangent)),
    'hvp': (
      lambda p, x, t: jax.jvp(lambda p: jax.grad(loss)(p, x), (p,), (t,)),
      (params, x, tangent),
    ),
  }
  return {k: (jax.jit(f).lower(*a).compile(), a) for k, (f, a) in fns.items()}


def main():
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--configs', default='small,medium')
  p.add_argument('--reps', type=int, default=20, help='timed rounds (medium and larger: a fifth)')
  p.add_argument('--json', default=RESULTS)
  args = p.parse_args()
  runtime.tune_cpu()  # before JAX's first computation, as train.py
  impls = (['native'] if native.preferred() else []) + ['fused', 'reference']
  results = {}
  print('Median ms per call (one-layer BiLSTM unless the config says otherwise)\n')
  print('| config | impl | ' + ' | '.join(PROGRAMS) + ' |')
  print('|---|---|' + '---|' * len(PROGRAMS))
  for name in args.configs.split(','):
    cands = {(impl, k): v for impl in impls for k, v in programs(CONFIGS[name], impl).items()}
    times = {key: [] for key in cands}
    reps = args.reps if CONFIGS[name][3] < 256 else max(3, args.reps // 5)
    for _ in range(reps):
      for key, (exe, a) in cands.items():
        start = time.perf_counter()
        jax.block_until_ready(exe(*a))
        times[key].append(time.perf_counter() - start)
    for impl in impls:
      med = {k: 1e3 * statistics.median(times[(impl, k)]) for k in PROGRAMS}
      results.setdefault(name, {})[impl] = med
      print(f'| {name} | {impl} | ' + ' | '.join(f'{med[k]:.1f}' for k in PROGRAMS) + ' |')
  os.makedirs(os.path.dirname(args.json), exist_ok=True)
  with open(args.json, 'w') as f:
    json.dump({'median_ms': results, 'jax': jax.__version__}, f, indent=2)
  print(f'\nwrote {args.json}')


if __name__ == '__main__':
  main()
