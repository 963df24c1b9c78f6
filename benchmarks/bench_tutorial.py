"""End-to-end wall time of the tutorial run: `train.py`'s default config vs PyTorch.

Both sides train the same model (BiLSTM(5 -> 8, bidirectional) + Linear(16 -> 1)) on the
same data with the same schedule (batch 16, Adam lr 0.01, 50 epochs, loss logged every
10 epochs with a dev evaluation). Each measurement runs in a fresh process and times
everything after the imports: data generation, model build, compilation (JAX), training,
evaluation and, for JAX, all that `train.py` does besides (5 checkpoints, TensorBoard,
two plots, the jax.export of the model). Interpreter start and imports are left out.
train.py freezes the objects its imports leave behind (`gc.freeze`, `runtime.freeze_gc`);
PyTorch is timed both as a plain script would run (`torch`) and with the same freeze
(`torch_gc_frozen`), which makes its loop faster too.

Four candidates, interleaved:
  jax_cold:  as `train.py --compilation_cache=`: every program compiled from scratch.
  jax_cache: as plain `train.py` on a second run: programs come from the on-disk
             compilation cache (primed once before timing).
  torch:     the same loop in PyTorch (2 threads), no checkpoints or plots.
  torch_gc_frozen: the same, after gc.freeze() like train.py.

  python benchmarks/bench_tutorial.py [--task bidir_window|seed_noise] [--repeats 3]

Prints a table and writes benchmarks/results/bench_tutorial[_TASK].json.
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def child_jax(task: str, cache_dir: str | None) -> float:
  from bilstm_jax import runtime
  from bilstm_jax.training import loop as train_lib
  from configs import default

  runtime.freeze_gc()  # as train.py does
  runtime.tune_cpu()
  if cache_dir:
    runtime.enable_compilation_cache(cache_dir)
  config = default.get_config()
  config.data.task = task
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    start = time.perf_counter()
    train_lib.train_and_evaluate(config, workdir)
    return time.perf_counter() - start


def child_torch(task: str, freeze_gc: bool) -> float:
  import torch

  from bilstm_jax import runtime
  from bilstm_jax.data import batching as data
  from configs import default

  if freeze_gc:  # the process setting train.py uses
    runtime.freeze_gc()
  torch.set_num_threads(2)
  config = default.get_config()
  config.data.task = task

  class TutorialModel(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.lstm = torch.nn.LSTM(
        config.data.input_size, config.model.hidden_size, batch_first=True, bidirectional=True
      )
      self.fc = torch.nn.Linear(2 * config.model.hidden_size, config.data.output_size)

    def forward(self, x):
      return self.fc(self.lstm(x)[0])

  start = time.perf_counter()
  train_set = data.synthetic(config.data, 'train')
  dev_set = data.synthetic(config.data, 'dev')
  x_dev, y_dev = torch.tensor(dev_set['inputs']), torch.tensor(dev_set['targets'])
  torch.manual_seed(config.seed)
  model = TutorialModel()
  opt = torch.optim.Adam(model.parameters(), lr=config.optim.learning_rate)
  crit = torch.nn.MSELoss()
  for epoch in range(1, config.train.epochs + 1):
    total = 0.0
    for batch in data.batches(train_set, config.train.batch_size, seed=config.seed, epoch=epoch):
      opt.zero_grad()
      loss = crit(model(torch.from_numpy(batch['inputs'])), torch.from_numpy(batch['targets']))
      loss.backward()
      opt.step()
      total += loss.item()
    if epoch % config.train.log_every_epochs == 0:
      with torch.no_grad():
        crit(model(x_dev), y_dev).item()
  return time.perf_counter() - start


def run_child(kind: str, task: str, cache_dir: str) -> float:
  cmd = [sys.executable, __file__, '--child', kind, '--task', task, '--cache-dir', cache_dir]
  out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
  return json.loads(out.stdout.strip().splitlines()[-1])['seconds']


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--task', default='bidir_window')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default=None)
  parser.add_argument('--child', choices=['jax_cold', 'jax_cache', 'torch', 'torch_gc_frozen'])
  parser.add_argument('--cache-dir', default=None)
  args = parser.parse_args()
  if args.child:
    if args.child.startswith('torch'):
      seconds = child_torch(args.task, freeze_gc=args.child == 'torch_gc_frozen')
    else:
      seconds = child_jax(args.task, args.cache_dir if args.child == 'jax_cache' else None)
    print(json.dumps({'seconds': seconds}))
    return

  kinds = ('jax_cold', 'jax_cache', 'torch', 'torch_gc_frozen')
  times = {k: [] for k in kinds}
  with tempfile.TemporaryDirectory() as cache_dir:
    run_child('jax_cache', args.task, cache_dir)  # primes the cache
    for _ in range(args.repeats):  # interleaved so noise hits all alike
      for k in kinds:
        times[k].append(run_child(k, args.task, cache_dir))
  med = {k: statistics.median(v) for k, v in times.items()}
  print(f'Tutorial run end to end (after imports), task={args.task}, median of {args.repeats}')
  print('| candidate | wall s (median) | all runs | torch / this | torch_gc_frozen / this |')
  print('|---|---|---|---|---|')
  for k in kinds:
    runs = ', '.join(f'{t:.3f}' for t in times[k])
    ratios = f'{med["torch"] / med[k]:.2f}x | {med["torch_gc_frozen"] / med[k]:.2f}x'
    print(f'| {k} | {med[k]:.3f} | {runs} | {ratios} |')
  out = args.out or os.path.join(
    ROOT,
    'benchmarks',
    'results',
    'bench_tutorial.json' if args.task == 'bidir_window' else f'bench_tutorial_{args.task}.json',
  )
  os.makedirs(os.path.dirname(out), exist_ok=True)
  with open(out, 'w') as f:
    json.dump({'task': args.task, 'times_s': times, 'median_s': med}, f, indent=2)


if __name__ == '__main__':
  main()
