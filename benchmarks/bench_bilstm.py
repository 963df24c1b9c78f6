"""BiLSTM speed on CPU: bilstm_jax against Flax linen and PyTorch, fwd+bwd and a train step.

One command measures everything, with the default runtime settings and with
`bilstm_jax.runtime.tune_cpu()` (as train.py runs), in two child processes one after the
other (those settings are process-wide state):

  PYTHONPATH=. python benchmarks/bench_bilstm.py              # full run, both settings
  PYTHONPATH=. python benchmarks/bench_bilstm.py --quick      # smoke run, seconds
  PYTHONPATH=. python benchmarks/bench_bilstm.py --runtime tuned --configs medium

Every candidate is timed round-robin (one call of each in turn, repeated), so noise on
this shared 2-core machine hits them alike. Reported: median milliseconds per call,
compile time of each jitted function (lower + compile), and the ratios torch/ours and
linen/ours for both of our layers: 'native' (the CPU kernel, what `impl='auto'` runs on
one CPU device) and 'fused' (the portable `lax.scan` version). The train step uses the
default `impl='auto'`, as train.py does. Prints markdown tables and writes
benchmarks/results/bench_bilstm.json.

On a GPU (JAX's default backend 'gpu') the same command adds two candidates and moves
PyTorch to the GPU when it can: 'cudnn' (`BiLSTM(impl='cudnn')`) and 'jax_rnn' (cuDNN
alone: `jax.experimental.rnn.lstm` on packed weights, the floor for 'cudnn'); 'native'
is then absent. There, run `--runtime default` (tune_cpu is about CPU buffers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

# name: (batch, time, input features, hidden, layers)
CONFIGS = {
  'seed': (16, 10, 5, 8, 1),
  'small': (32, 50, 32, 64, 1),
  'medium': (64, 100, 128, 256, 1),
  'long': (16, 500, 64, 128, 1),
  'small_2layer': (32, 50, 32, 64, 2),
}
RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'results', 'bench_bilstm.json')


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
  p.add_argument('--configs', default=','.join(CONFIGS), help='comma-separated config names')
  p.add_argument('--reps', type=int, default=40, help='most timed rounds per config')
  p.add_argument('--block', type=int, default=10, help='most consecutive calls per round')
  p.add_argument(
    '--gap',
    type=float,
    default=0.05,
    help='seconds of rest (untimed) before each block, so no library starts among the '
    'threads the previous one left spinning',
  )
  p.add_argument('--min-reps', type=int, default=5, help='fewest timed rounds per config')
  p.add_argument('--budget', type=float, default=6.0, help='seconds of timing per config')
  p.add_argument('--quick', action='store_true', help='seed and small only, few rounds')
  p.add_argument(
    '--runtime',
    choices=['default', 'tuned', 'both'],
    default='both',
    help='tuned: bilstm_jax.runtime.tune_cpu() in the measuring process',
  )
  p.add_argument('--no-bf16', action='store_true', help='skip the bfloat16 variant')
  p.add_argument('--no-torch', action='store_true', help='skip PyTorch')
  p.add_argument('--steps-per-call', type=int, default=10, help='train steps per call (seed)')
  p.add_argument('--json', default=RESULTS, help='where to write the results')
  p.add_argument('--child-out', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.quick:
    args.configs, args.reps, args.min_reps, args.budget = 'seed,small', 5, 3, 2.0
  return args


# ----------------------------------------------------------------------------- candidates


def jax_candidates(name, cfg, args):
  """Returns {candidate: (step_fn, compile_seconds)} for the JAX candidates of a config."""
  import flax.linen as nn
  import jax
  import jax.numpy as jnp

  from bilstm_jax.nn import native
  from bilstm_jax.nn.lstm import BiLSTM

  b, t, i, h, layers = cfg
  kx, kp, ky = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(kx, (b, t, i), jnp.float32)
  out = {}

  def compiled(fn, *example, donate=()):
    start = time.perf_counter()
    exe = jax.jit(fn, donate_argnums=donate).lower(*example).compile()
    return exe, time.perf_counter() - start

  def add_fwd_bwd(label, module):
    params = module.init(kp, x)

    def loss(params, x):
      y = module.apply(params, x)
      return jnp.sum(y[0] if isinstance(y, tuple) else y)

    exe, secs = compiled(jax.value_and_grad(loss), params, x)
    out[label] = (lambda: jax.block_until_ready(exe(params, x)), secs)

  if native.preferred():  # the CPU kernel builds here (else the table shows nan)
    add_fwd_bwd('native', BiLSTM(h, num_layers=layers, impl='native'))
  add_fwd_bwd('fused', BiLSTM(h, num_layers=layers, impl='fused'))
  add_fwd_bwd('reference', BiLSTM(h, num_layers=layers, impl='reference'))
  if not args.no_bf16:  # bfloat16 matmul operands: not the same numbers as float32
    bf16 = jnp.bfloat16
    if native.preferred():
      add_fwd_bwd('native_bf16', BiLSTM(h, num_layers=layers, impl='native', dtype=bf16))
    add_fwd_bwd('fused_bf16', BiLSTM(h, num_layers=layers, impl='fused', dtype=bf16))

  class Linen(nn.Module):
    @nn.compact
    def __call__(self, x):
      for _ in range(layers):
        x = nn.Bidirectional(nn.RNN(nn.OptimizedLSTMCell(h)), nn.RNN(nn.OptimizedLSTMCell(h)))(x)
      return x

  add_fwd_bwd('linen', Linen())
  if jax.default_backend() == 'gpu':
    add_fwd_bwd('cudnn', BiLSTM(h, num_layers=layers, impl='cudnn'))
    # cuDNN alone: `jax.experimental.rnn.lstm` on packed weights, the floor for 'cudnn'.
    from jax.experimental import rnn

    weights = rnn.init_lstm_weight(kp, i, h, layers, True)
    zeros = jnp.zeros((2 * layers, b, h), jnp.float32)
    full = jnp.full((b,), t, jnp.int32)

    def rnn_loss(weights, x):
      return jnp.sum(rnn.lstm(x, zeros, zeros, weights, full, i, h, layers, 0.0, True)[0])

    exe_rnn, secs = compiled(jax.value_and_grad(rnn_loss), weights, x)
    out['jax_rnn'] = (lambda: jax.block_until_ready(exe_rnn(weights, x)), secs)

  # The full training step: forward, backward and Adam, as train.py runs it.
  step_fn, state, batch, rng, source = make_train_step(cfg, x, ky)
  exe, secs = compiled(step_fn, state, batch, rng, donate=0)
  holder = [state]

  def run_train():
    holder[0], metrics = exe(holder[0], batch, rng)
    jax.block_until_ready(metrics)

  out['train_step'] = (run_train, secs)

  if name == 'seed' and args.steps_per_call > 1:
    fn, m_state, m_batches = make_train_steps(cfg, x, ky, args.steps_per_call)
    m_exe, m_secs = compiled(fn, m_state, m_batches, rng, donate=0)
    m_holder = [m_state]

    def run_multi():
      m_holder[0], metrics = m_exe(m_holder[0], m_batches, rng)
      jax.block_until_ready(metrics)

    out[f'train_steps_x{args.steps_per_call}'] = (run_multi, m_secs)

  return out, source


def _batch(cfg, x, key):
  import jax
  import jax.numpy as jnp

  b, t = cfg[:2]
  return {
    'inputs': x,
    'lengths': jnp.full((b,), t, jnp.int32),
    'targets': jax.random.normal(key, (b, t, 1), jnp.float32),
  }


def make_train_step(cfg, x, key):
  """(step_fn, state, batch, rng, source): `train_lib.train_step` on the regressor."""
  import jax
  import optax

  from bilstm_jax.models import BiLSTMRegressor
  from bilstm_jax.training import loop as train_lib

  batch = _batch(cfg, x, key)
  model = BiLSTMRegressor(hidden_size=cfg[3], num_layers=cfg[4])  # impl='auto', as train.py
  state = train_lib.create_train_state(jax.random.key(2), model, optax.adam(1e-3), batch)
  return train_lib.train_step, state, batch, jax.random.key(1), 'bilstm_jax.training.loop'


def make_train_steps(cfg, x, key, k):
  """`train_lib.train_steps` over k copies of one batch per call."""
  import jax
  import jax.numpy as jnp

  from bilstm_jax.training import loop as train_lib

  _, state, batch, _, _ = make_train_step(cfg, x, key)
  batches = jax.tree.map(lambda a: jnp.stack([a] * k), batch)
  return train_lib.train_steps, state, batches


def torch_candidate(cfg, gpu=False):
  """(step_fn, device): PyTorch's nn.LSTM fwd+bwd, oneDNN on 2 CPU threads or cuDNN."""
  import torch

  torch.set_num_threads(2)
  device = 'cuda' if gpu and torch.cuda.is_available() else 'cpu'
  b, t, i, h, layers = cfg
  torch.manual_seed(0)
  net = torch.nn.LSTM(i, h, num_layers=layers, bidirectional=True, batch_first=True)
  net = net.to(device)
  x = torch.randn(b, t, i, device=device)

  def run():
    net.zero_grad(set_to_none=True)
    y, _ = net(x)
    y.sum().backward()
    if device == 'cuda':
      torch.cuda.synchronize()

  return run, device


def gemm_rate(n=1024, reps=30):
  import jax
  import jax.numpy as jnp
  import numpy as np

  a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
  f = jax.jit(lambda a, b: a @ b)
  jax.block_until_ready(f(a, a))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(f(a, a))
    times.append(time.perf_counter() - start)
  return 2 * n**3 / float(np.median(times)) / 1e9


# ----------------------------------------------------------------------------- measuring


def time_round_robin(cands, args):
  """Median ms per call of each candidate; rounds fit `args.budget` seconds.

  Each round runs every candidate in turn, in a block of up to `args.block` consecutive
  calls (fewer for slow candidates: a block lasts about 0.1 s), so each is timed in the
  steady state of a training loop that calls the same function over and over; rotating
  the order every round spreads the machine's noise over all of them alike. Before each
  block the process rests `args.gap` seconds: PyTorch's OpenMP threads and XLA's pool
  keep spinning for a while after a call, and rotation keeps each candidate's predecessor
  the same, so without the rest the candidate after torch (with one-call blocks at medium
  and long) paid for torch's threads every time (benchmarks/NOTES.md). The number of
  rounds lies in [min_reps, reps]; if the machine is so busy that rounds take far longer
  than estimated, timing stops after 2.5 x budget seconds (at least 3 rounds); the reps
  column shows it.
  """
  import numpy as np

  block = {}
  for k, (fn, _) in cands.items():  # warm up: first-call costs are not steady state
    fn()
    s = time.perf_counter()
    fn()
    block[k] = int(min(args.block, max(1, 0.1 // max(time.perf_counter() - s, 1e-9))))
  start = time.perf_counter()
  for fn, _ in cands.values():
    fn()
  per_call_round = time.perf_counter() - start
  per_round = per_call_round * max(block.values())
  reps = int(min(args.reps, max(args.min_reps, args.budget // max(per_round, 1e-9))))
  times = {k: [] for k in cands}
  names = list(cands)
  deadline = time.perf_counter() + 2.5 * args.budget
  for r in range(reps):
    for k in names[r % len(names) :] + names[: r % len(names)]:
      time.sleep(args.gap)
      for _ in range(block[k]):
        s = time.perf_counter()
        cands[k][0]()
        times[k].append(time.perf_counter() - s)
    if r + 1 >= 3 and time.perf_counter() > deadline:  # a loaded machine: stop early
      break
  reps = r + 1
  stats = {}
  for k, v in times.items():
    v = np.asarray(v) * 1e3
    stats[k] = {
      'median_ms': float(np.median(v)),
      'p25_ms': float(np.percentile(v, 25)),
      'p75_ms': float(np.percentile(v, 75)),
      'reps': reps,
      'calls': len(v),
      'compile_s': cands[k][1],
    }
  return stats


def run_child(args):
  """Measures in this process (tuned first if asked) and writes JSON."""
  tuned = args.runtime == 'tuned'
  if tuned:
    from bilstm_jax import runtime

    applied = runtime.tune_cpu()
  import jax

  result = {
    'runtime': 'tuned' if tuned else 'default',
    'tune_cpu_applied': applied if tuned else None,
    'jax': jax.__version__,
    'backend': jax.default_backend(),
    'devices': [str(d) for d in jax.devices()],
    'gemm_gflops_f32_1024': gemm_rate(),
    'configs': {},
  }
  for name in args.configs.split(','):
    cfg = CONFIGS[name]
    cands, source = jax_candidates(name, cfg, args)
    if not args.no_torch:
      run_torch, result['torch_device'] = torch_candidate(cfg, gpu=jax.default_backend() == 'gpu')
      cands['torch'] = (run_torch, None)
    load_before = os.getloadavg()[0]
    stats = time_round_robin(cands, args)
    key = f'train_steps_x{args.steps_per_call}'
    if key in stats:
      stats[key]['per_step_ms'] = stats[key]['median_ms'] / args.steps_per_call
    # Other processes on this 2-core machine distort everything; record how busy it was.
    load = [load_before, os.getloadavg()[0]]
    result['configs'][name] = {
      'shape_BTIH_layers': list(cfg),
      'train_step': source,
      'loadavg_1min': load,
      **stats,
    }
    print(
      f'[{result["runtime"]}] {name}: '
      + ', '.join(f'{k} {v["median_ms"]:.2f}' for k, v in stats.items()),
      flush=True,
    )
  with open(args.child_out, 'w') as f:
    json.dump(result, f)


# ----------------------------------------------------------------------------- reporting


def _ms(stats, k):
  return stats[k]['median_ms'] if k in stats else float('nan')


def table(run):
  rows = [
    f'### runtime: {run["runtime"]} (float32 GEMM 1024^2: '
    f'{run["gemm_gflops_f32_1024"]:.1f} GFLOP/s)',
    '',
    '| config | native | fused | reference | native bf16 | fused bf16 | linen | torch '
    '| torch/native | linen/native | torch/fused | linen/fused | train_step | reps | load |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ]
  for name, s in run['configs'].items():
    n, f, torch, linen = (_ms(s, k) for k in ('native', 'fused', 'torch', 'linen'))
    rows.append(
      f'| {name} | {n:.2f} | {f:.2f} | {_ms(s, "reference"):.2f} | {_ms(s, "native_bf16"):.2f} '
      f'| {_ms(s, "fused_bf16"):.2f} '
      f'| {linen:.2f} | {torch:.2f} | {torch / n:.2f}x | {linen / n:.2f}x | {torch / f:.2f}x '
      f'| {linen / f:.2f}x | {_ms(s, "train_step"):.2f} | {s["fused"]["reps"]} '
      f'| {max(s["loadavg_1min"]):.1f} |'
    )
  rows += [
    '',
    'compile seconds (lower + compile):',
    '',
    '| config | native | fused | reference | native bf16 | fused bf16 | linen | train_step |',
    '|---|---|---|---|---|---|---|---|',
  ]
  for name, s in run['configs'].items():
    c = [
      s[k]['compile_s'] if k in s else float('nan')
      for k in ('native', 'fused', 'reference', 'native_bf16', 'fused_bf16', 'linen', 'train_step')
    ]
    rows.append(f'| {name} | ' + ' | '.join(f'{v:.2f}' for v in c) + ' |')
  if any('cudnn' in s for s in run['configs'].values()):
    rows += [
      '',
      f'GPU ({", ".join(run["devices"])}; torch on {run.get("torch_device")}), ms:',
      '',
      '| config | cudnn | jax_rnn | fused | linen | torch | jax_rnn/cudnn | torch/cudnn '
      '| linen/cudnn | fused/cudnn |',
      '|---|---|---|---|---|---|---|---|---|---|',
    ]
    for name, s in run['configs'].items():
      c, r, f, linen, torch = (_ms(s, k) for k in ('cudnn', 'jax_rnn', 'fused', 'linen', 'torch'))
      rows.append(
        f'| {name} | {c:.3f} | {r:.3f} | {f:.3f} | {linen:.3f} | {torch:.3f} | {r / c:.2f}x '
        f'| {torch / c:.2f}x | {linen / c:.2f}x | {f / c:.2f}x |'
      )
  for name, s in run['configs'].items():
    for k, v in s.items():
      if k.startswith('train_steps_x'):
        rows.append(
          f'\n{name}: {k} {v["per_step_ms"]:.3f} ms per step '
          f'(train_step alone {_ms(s, "train_step"):.3f} ms)'
        )
  return '\n'.join(rows)


def main(argv=None):
  args = parse_args(argv)
  if args.child_out:
    run_child(args)
    return
  modes = ['default', 'tuned'] if args.runtime == 'both' else [args.runtime]
  runs = {}
  child_args = [
    f'--configs={args.configs}',
    f'--reps={args.reps}',
    f'--block={args.block}',
    f'--gap={args.gap}',
    f'--min-reps={args.min_reps}',
    f'--budget={args.budget}',
    f'--steps-per-call={args.steps_per_call}',
    *(['--no-bf16'] if args.no_bf16 else []),
    *(['--no-torch'] if args.no_torch else []),
  ]
  for mode in modes:
    with tempfile.NamedTemporaryFile(suffix='.json', delete=False) as tmp:
      child_out = tmp.name
    cmd = [
      sys.executable,
      os.path.abspath(__file__),
      *child_args,
      f'--runtime={mode}',
      f'--child-out={child_out}',
    ]
    subprocess.run(cmd, check=True)
    with open(child_out) as f:
      runs[mode] = json.load(f)
    os.unlink(child_out)
  report = {
    'machine': {
      'cpus': os.cpu_count(),
      'processor': platform.processor(),
      'python': platform.python_version(),
    },
    'args': {k: v for k, v in vars(args).items() if k != 'child_out'},
    'runs': runs,
  }
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, 'w') as f:
    json.dump(report, f, indent=1)
  for run in runs.values():
    print()
    print(table(run))
  print(f'\nwrote {args.json}')


if __name__ == '__main__':
  main()
