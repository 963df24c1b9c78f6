"""End-to-end wall time of the tutorial run: `train.py`'s default config vs PyTorch.

Both sides train the same model (BiLSTM(5 -> 8, bidirectional) + Linear(16 -> 1)) on the
same data with the same schedule (batch 16, Adam lr 0.01, 50 epochs, loss logged every
10 epochs with a dev evaluation). Timed: everything after the imports: data generation,
model build, jit compilation (JAX), training, logging and the final evaluation.

  python benchmarks/bench_tutorial.py [--task bidir_window|seed_noise] [--repeats 3]

Prints a table and writes benchmarks/results/bench_tutorial.json.
"""

import argparse
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bilstm_jax import data, train_lib  # noqa: E402
from configs import default  # noqa: E402


def run_jax(config) -> float:
  with tempfile.TemporaryDirectory() as workdir, contextlib.redirect_stdout(io.StringIO()):
    start = time.perf_counter()
    train_lib.train_and_evaluate(config, workdir)
    return time.perf_counter() - start


class TutorialModel(torch.nn.Module):
  def __init__(self, cfg):
    super().__init__()
    self.lstm = torch.nn.LSTM(
      cfg.data.input_size, cfg.model.hidden_size, batch_first=True, bidirectional=True
    )
    self.fc = torch.nn.Linear(2 * cfg.model.hidden_size, cfg.data.output_size)

  def forward(self, x):
    return self.fc(self.lstm(x)[0])


def run_torch(config) -> float:
  start = time.perf_counter()
  train_set = data.synthetic(config.data, 'train')
  dev_set = data.synthetic(config.data, 'dev')
  x_dev, y_dev = torch.tensor(dev_set['inputs']), torch.tensor(dev_set['targets'])
  torch.manual_seed(config.seed)
  model = TutorialModel(config)
  opt = torch.optim.Adam(model.parameters(), lr=config.optim.learning_rate)
  crit = torch.nn.MSELoss()
  bs = config.train.batch_size
  for epoch in range(1, config.train.epochs + 1):
    total = 0.0
    for batch in data.batches(train_set, bs, seed=config.seed, epoch=epoch):
      opt.zero_grad()
      loss = crit(model(torch.from_numpy(batch['inputs'])), torch.from_numpy(batch['targets']))
      loss.backward()
      opt.step()
      total += loss.item()
    if epoch % config.train.log_every_epochs == 0:
      with torch.no_grad():
        dev = crit(model(x_dev), y_dev).item()
      print(f'epoch {epoch} train {total:.4f} dev {dev:.4f}', file=io.StringIO())
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--task', default='bidir_window')
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--out', default='benchmarks/results/bench_tutorial.json')
  args = parser.parse_args()
  torch.set_num_threads(2)
  config = default.get_config()
  config.data.task = args.task
  times = {'jax': [], 'torch': []}
  for _ in range(args.repeats):  # interleaved so noise hits both alike
    times['jax'].append(run_jax(config))
    times['torch'].append(run_torch(config))
  med = {k: statistics.median(v) for k, v in times.items()}
  steps = config.train.epochs * data.num_batches(
    len(data.synthetic(config.data, 'train')['lengths']), config.train.batch_size, True
  )
  print(f'Tutorial run, task={args.task}, {steps} optimiser steps, median of {args.repeats}')
  print('| side | wall s (median) | all runs |')
  print('|---|---|---|')
  for k in ('jax', 'torch'):
    print(f'| {k} | {med[k]:.3f} | {", ".join(f"{t:.3f}" for t in times[k])} |')
  print(f'torch / jax = {med["torch"] / med["jax"]:.2f}x')
  os.makedirs(os.path.dirname(args.out), exist_ok=True)
  result = {
    'task': args.task,
    'steps': steps,
    'times_s': times,
    'median_s': med,
    'torch_over_jax': med['torch'] / med['jax'],
    'numpy': np.__version__,
    'torch': torch.__version__,
  }
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
