"""Length buckets (`data.buckets`) on a ragged dataset: padding saved and training speed.

Trains the same regression model on the same ragged data with every batch at full
length and with K length buckets, side by side in one process, alternating the order
each round. Each epoch after the first (which compiles every shape) is timed.

  python benchmarks/bench_buckets.py [--rounds 3] [--epochs 3] [--buckets 0,4,8]

Prints a table and writes benchmarks/results/buckets.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

from bilstm_jax import app
from bilstm_jax.data import batching
from configs import default

HERE = os.path.dirname(os.path.abspath(__file__))


def ragged_files(directory: str, num: int, max_len: int, features: int, seed: int = 0):
  """A regression problem with lengths uniform in [8, max_len]: y[t] = x[t, 0] * x[t, 1]."""
  rng = np.random.default_rng(seed)
  paths = []
  for split, n in (('train', num), ('dev', num // 8)):
    lengths = rng.integers(8, max_len + 1, n).astype(np.int32)
    x = rng.standard_normal((n, max_len, features)).astype(np.float32)
    valid = (np.arange(max_len)[None, :] < lengths[:, None])[..., None]
    x *= valid
    y = (x[..., :1] * x[..., 1:2]) * valid
    path = os.path.join(directory, f'{split}.npz')
    np.savez(path, inputs=x, lengths=lengths, targets=y)
    paths.append(path)
  return paths


def config(train: str, dev: str, buckets: int, hidden: int, batch: int):
  cfg = default.get_config()
  cfg.data.task, cfg.data.train, cfg.data.dev = 'regression', train, dev
  cfg.data.buckets = buckets
  cfg.model.hidden_size = hidden
  cfg.train.batch_size = batch
  cfg.train.steps_per_call = 8
  return cfg


def time_epochs(cfg, epochs: int) -> dict:
  """Seconds per epoch after the first, and the epoch's padding."""
  _, prog, _, _ = app.prepare(cfg, tempfile.mkdtemp())
  state, rng = prog.init()
  seconds = []
  for epoch in range(1, epochs + 2):
    batches, chunks = prog.epoch(epoch)
    start = time.perf_counter()
    for lo, hi in chunks:
      state, _ = prog.train_chunk(state, batches[lo:hi], rng)
    jax.block_until_ready(state.params)
    if epoch > 1:
      seconds.append(time.perf_counter() - start)
  return {'seconds_per_epoch': float(np.median(seconds)), 'steps_per_epoch': prog.steps_per_epoch}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--epochs', type=int, default=2)
  parser.add_argument('--buckets', default='0,4,8')
  parser.add_argument('--num', type=int, default=2048)
  parser.add_argument('--max-len', type=int, default=128)
  parser.add_argument('--features', type=int, default=16)
  parser.add_argument('--hidden', type=int, default=64)
  parser.add_argument('--batch', type=int, default=32)
  args = parser.parse_args()
  settings = [int(b) for b in args.buckets.split(',')]
  directory = tempfile.mkdtemp()
  train, dev = ragged_files(directory, args.num, args.max_len, args.features)
  lengths = np.load(train)['lengths']
  results = {k: {'seconds': []} for k in settings}
  for r in range(args.rounds):
    for k in settings if r % 2 == 0 else settings[::-1]:
      cfg = config(train, dev, k, args.hidden, args.batch)
      out = time_epochs(cfg, args.epochs)
      results[k]['seconds'].append(out['seconds_per_epoch'])
      results[k]['steps_per_epoch'] = out['steps_per_epoch']
  base = None
  rows = []
  for k in settings:
    bk = batching.Buckets.from_lengths(lengths, k) if k else None
    plan = batching.epoch_plan(lengths, args.batch, seed=0, epoch=1, buckets=bk)
    pad = batching.padding_stats(plan, lengths, args.max_len)
    sec = float(np.median(results[k]['seconds']))
    steps = results[k]['steps_per_epoch']
    base = base or sec
    rows.append(
      {
        'buckets': k,
        'boundaries': list(bk.boundaries) if bk else [args.max_len],
        'padding_fraction': pad['padding_fraction'],
        'padded_steps': pad['padded_steps'],
        'steps_per_s': steps / sec,
        'seconds_per_epoch': sec,
        'speedup': base / sec,
        'per_round_s': results[k]['seconds'],
      }
    )
  print(
    f'{args.num} sequences, lengths uniform in [8, {args.max_len}], batch {args.batch}, '
    f'hidden {args.hidden}, features {args.features}; median of {args.rounds} rounds'
  )
  print(f'{"buckets":>7} {"padding":>8} {"steps/s":>8} {"s/epoch":>8} {"speedup":>8}  boundaries')
  for r in rows:
    print(
      f'{r["buckets"]:>7} {r["padding_fraction"]:>8.1%} {r["steps_per_s"]:>8.1f} '
      f'{r["seconds_per_epoch"]:>8.2f} {r["speedup"]:>7.2f}x  {r["boundaries"]}'
    )
  os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
  with open(os.path.join(HERE, 'results', 'buckets.json'), 'w') as f:
    json.dump({'args': vars(args), 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  main()
