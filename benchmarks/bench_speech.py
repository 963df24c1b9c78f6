"""Training throughput (real frames per second) of the speech models: JAX vs PyTorch.

Both sides train the same model on the same padded batches: the `fsdd` classifier
(2-layer BiLSTM, mean pooling over valid frames, Linear -> 10) and, with `--ctc`, the
`fsdd_ctc` model (2-layer BiLSTM, Linear -> 11, CTC with blank 10). The batches are the
first epoch's of the run's own plan (length buckets, batch 32); PyTorch packs each batch
(`pack_padded_sequence`), so its backward direction starts at each true end as ours does.
AdamW with gradient clipping on both sides. Each side first runs every batch shape once
(compilation, allocator warm-up), then times `--steps` steps, for `--rounds` interleaved
rounds (medians kept); frames/s counts real (unpadded) frames only. PyTorch runs twice:
packed (our semantics) and on the padded batch (its fastest path, with the backward
direction starting at the padding).

  python benchmarks/bench_speech.py [--steps 20] [--rounds 3] [--ctc]

Needs ../shared/data/fsdd; prints a table and writes benchmarks/results/bench_speech.json.
"""

import argparse
import functools
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def batches_of(config, steps: int):
  """The task and `steps` training batches (cycling through the first epoch's plan)."""
  from bilstm_jax import app
  from bilstm_jax.data import batching
  from bilstm_jax.training import program

  task, train_set, _ = app.load_task_data(config)
  buckets = program.make_buckets(train_set, config.data.buckets)
  plan = batching.epoch_plan(
    train_set['lengths'], config.train.batch_size, seed=0, epoch=1, buckets=buckets
  )
  all_batches = batching.plan_batches(train_set, plan, task.time_keys)
  return task, [all_batches[i % len(all_batches)] for i in range(steps)]


def jax_runner(config, task, batches):
  """A warmed-up callable that trains on `batches` once and returns the seconds taken."""
  import jax

  from bilstm_jax import app
  from bilstm_jax.training import optim, steps

  model = task.make_model()
  tx = optim.make_optimizer(app.optimizer_spec(config.optim), 10_000)
  state = steps.create_train_state(
    jax.random.key(0), model, tx, task.model_inputs(task.example_batch(32, 1))
  )
  step = jax.jit(functools.partial(steps.train_step, task=task), donate_argnums=0)
  rng = jax.random.key(1)
  for b in {b['inputs'].shape[1]: b for b in batches}.values():  # every shape once
    state, m = step(state, b, rng)
  jax.block_until_ready(m)
  box = {'state': state}

  def run() -> float:
    start = time.perf_counter()
    for b in batches:
      box['state'], m = step(box['state'], b, rng)
    jax.block_until_ready(m)
    return time.perf_counter() - start

  return run


def torch_runner(config, task, batches, ctc: bool, packed: bool):
  """The same, in PyTorch; `packed=False` runs the LSTM over the padded batch (faster, but
  the backward direction then starts at the padding, unlike ours)."""
  import torch
  from torch import nn
  from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

  m = config.model
  lstm = nn.LSTM(
    task.sizes['input_size'],
    m.hidden_size,
    num_layers=m.num_layers,
    dropout=m.dropout,
    bidirectional=True,
    batch_first=True,
  )
  head = nn.Linear(2 * m.hidden_size, task.sizes['num_classes'])
  drop = nn.Dropout(m.dropout)
  params = list(lstm.parameters()) + list(head.parameters())
  opt = torch.optim.AdamW(
    params, lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay
  )
  ctc_loss = nn.CTCLoss(blank=task.sizes['num_classes'] - 1, reduction='sum', zero_infinity=True)
  tensors = [{k: torch.from_numpy(np.asarray(v)) for k, v in b.items()} for b in batches]

  def step(b):
    lengths = b['lengths']
    if packed:
      seqs = pack_padded_sequence(b['inputs'], lengths, batch_first=True, enforce_sorted=False)
      out, _ = pad_packed_sequence(lstm(seqs)[0], batch_first=True)
    else:
      out = lstm(b['inputs'])[0]
    if ctc:
      logp = head(drop(out)).log_softmax(-1).transpose(0, 1)  # [time, batch, classes]
      labels = b['labels']
      label_lengths = (labels >= 0).sum(-1)
      loss = ctc_loss(logp, labels.clamp(min=0), lengths, label_lengths) / len(lengths)
    else:
      mask = (torch.arange(out.shape[1])[None, :] < lengths[:, None]).unsqueeze(-1)
      pooled = (out * mask).sum(1) / lengths[:, None]
      loss = nn.functional.cross_entropy(head(drop(pooled)), b['labels'].long())
    opt.zero_grad()
    loss.backward()
    nn.utils.clip_grad_norm_(params, config.optim.grad_clip_norm)
    opt.step()

  for b in {b['inputs'].shape[1]: b for b in tensors}.values():
    step(b)

  def run() -> float:
    start = time.perf_counter()
    for b in tensors:
      step(b)
    return time.perf_counter() - start

  return run


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--steps', type=int, default=20, help='training steps per timed round')
  parser.add_argument('--rounds', type=int, default=3, help='interleaved rounds; medians kept')
  parser.add_argument('--ctc', action='store_true', help='also the CTC model')
  parser.add_argument('--buckets', type=int, default=-1, help="data.buckets; -1: the config's")
  args = parser.parse_args()
  import torch

  from bilstm_jax import runtime
  from configs import fsdd, fsdd_ctc

  runtime.tune_cpu()
  torch.set_num_threads(os.cpu_count() or 1)
  rows = []
  models = [('fsdd classifier', fsdd.get_config(), False)]
  if args.ctc:
    models.append(('fsdd_ctc', fsdd_ctc.get_config(), True))
  for name, config, ctc in models:
    if args.buckets >= 0:
      config.data.buckets = args.buckets
    task, batches = batches_of(config, args.steps)
    frames = int(sum(b['lengths'].sum() for b in batches))
    padded = int(sum(b['inputs'].shape[0] * b['inputs'].shape[1] for b in batches))
    runners = {
      'jax': jax_runner(config, task, batches),
      'torch_packed': torch_runner(config, task, batches, ctc, packed=True),
      'torch_padded': torch_runner(config, task, batches, ctc, packed=False),
    }
    times = {k: [] for k in runners}
    for _ in range(args.rounds):  # interleaved, so load changes hit every side alike
      for k, run in runners.items():
        times[k].append(run())
    med = {k: float(np.median(v)) for k, v in times.items()}
    rows.append(
      {
        'model': name,
        'steps': args.steps,
        'rounds': args.rounds,
        'batch_size': config.train.batch_size,
        'buckets': config.data.buckets,
        'real_frames': frames,
        'padding': 1 - frames / padded,
        'seconds': times,
        **{f'{k}_frames_per_s': frames / v for k, v in med.items()},
        'speedup_vs_packed': med['torch_packed'] / med['jax'],
        'speedup_vs_padded': med['torch_padded'] / med['jax'],
      }
    )
    print(json.dumps(rows[-1]), flush=True)  # a row survives a later model's failure
  print(
    f'{"model":16s} {"JAX fr/s":>9s} {"torch packed":>13s} {"torch padded":>13s} '
    f'{"vs packed":>10s} {"vs padded":>10s}'
  )
  for r in rows:
    print(
      f'{r["model"]:16s} {r["jax_frames_per_s"]:9.0f} {r["torch_packed_frames_per_s"]:13.0f} '
      f'{r["torch_padded_frames_per_s"]:13.0f} {r["speedup_vs_packed"]:9.2f}x '
      f'{r["speedup_vs_padded"]:9.2f}x'
    )
  out = os.path.join(ROOT, 'benchmarks', 'results', 'bench_speech.json')
  with open(out, 'w') as f:
    json.dump(
      {'threads': torch.get_num_threads(), 'load_average': os.getloadavg(), 'rows': rows},
      f,
      indent=2,
    )
  print(f'wrote {out}')


if __name__ == '__main__':
  main()
