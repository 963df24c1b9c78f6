"""Would bucketing characters by word length pay? Two measurements, side by side.

The text tasks pad every word's characters to `data.max_word_len` (20): `chars` is
int32[batch, time, 20]. A second trim axis would cut each batch (or each compiled call) to
its longest word, rounded up to a few bucket widths. This script measures what that could
save before anyone builds it:

  data   on the real training splits (UD EWT, CoNLL-2003, from ../shared/data), the longest
         word of each batch of a length-bucketed epoch, as the training loop plans it
         (`--batch` sentences, 6 length buckets): the width a trim could cut each batch to.
  speed  bench_text.py's CoNLL tagger (BiLSTM-CRF with the character CNN) trained on the
         same batches with the character axis padded to each width: tokens/s per width,
         widths alternating round by round.

Expectation written before measuring: the character CNN is a small part of a step (one
1-D convolution of 50 filters over 30-dim character embeddings, against a BiLSTM of
hidden 128 on 100-dim inputs), so trimming 20 -> 12 should save well under 20% of a step.

  PYTHONPATH=. python benchmarks/bench_char_width.py [--steps 20] [--rounds 3]

Prints two tables and writes benchmarks/results/char_width.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bench_text  # noqa: E402

from bilstm_jax.data import batching, text  # noqa: E402

DATA = os.path.join(os.path.dirname(os.path.dirname(HERE)), 'shared', 'data')
SPLITS = {
  'ud_ewt': ('ud_ewt/en_ewt-ud-train.conllu', text.read_conllu),
  'conll2003': ('conll2003/eng.train', text.read_conll),
}
CAP = 20  # data.max_word_len


def batch_widths(path: str, reader, batch_size: int) -> dict:
  """The longest word (capped at CAP) of each batch of one bucketed training epoch."""
  sentences = reader(path)
  lengths = np.array([len(s.tokens) for s in sentences])
  longest = np.array([min(max(map(len, s.tokens)), CAP) for s in sentences])
  plan = batching.epoch_plan(
    lengths, batch_size, seed=0, buckets=batching.Buckets.from_lengths(lengths, 6)
  )
  widths = np.array([longest[row[row >= 0]].max() for row in plan.indices])
  return {
    'batches': len(widths),
    'width_quantiles': {q: float(np.quantile(widths, q / 100)) for q in (10, 50, 90)},
    'batches_at_cap': float((widths >= CAP).mean()),
    'mean_width': float(widths.mean()),
  }


def with_width(batch: dict, width: int) -> dict:
  chars = batch['chars'][..., :width]
  pad = width - chars.shape[-1]
  if pad > 0:
    chars = np.pad(chars, [(0, 0), (0, 0), (0, pad)])
  return {**batch, 'chars': chars}


def speed(widths: tuple[int, ...], steps: int, rounds: int) -> dict:
  """bilstm_jax tokens/s of bench_text's 'ner' model at each character width."""
  spec = bench_text.MODELS['ner']
  batches = bench_text.make_batches(steps, 1, spec['num_tags'], 'buckets')
  run, sync = bench_text.jax_trainer(spec)
  sets = {w: [with_width(b, w) for b in batches] for w in widths}
  for w in widths:  # compile every shape first
    sync([run(b) for b in sets[w]][-1])
  rates = {w: [] for w in widths}
  for r in range(rounds):
    for w in widths if r % 2 == 0 else widths[::-1]:
      rates[w].append(bench_text.measure(run, sync, sets[w]))
  return {w: float(np.median(v)) for w, v in rates.items()}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=20)
  parser.add_argument('--rounds', type=int, default=3)
  parser.add_argument('--batch', type=int, default=32)
  parser.add_argument('--widths', default='20,16,12,8')
  args = parser.parse_args()
  data = {}
  for name, (rel, reader) in SPLITS.items():
    path = os.path.join(DATA, rel)
    if os.path.exists(path):
      data[name] = batch_widths(path, reader, args.batch)
  print(f'{"data":10} {"batches":>8} {"p10":>5} {"p50":>5} {"p90":>5} {"at cap":>7}')
  for name, d in data.items():
    q = d['width_quantiles']
    print(
      f'{name:10} {d["batches"]:8d} {q[10]:5.0f} {q[50]:5.0f} {q[90]:5.0f} '
      f'{d["batches_at_cap"]:7.1%}'
    )
  widths = tuple(int(w) for w in args.widths.split(','))
  rates = speed(widths, args.steps, args.rounds)
  print(f'\n{"width":>5} {"tokens/s":>10} {"vs " + str(widths[0]):>7}')
  for w in widths:
    print(f'{w:5d} {rates[w]:10.0f} {rates[w] / rates[widths[0]]:6.3f}x')
  out = {
    'data': data,
    'tokens_per_s': rates,
    'steps': args.steps,
    'rounds': args.rounds,
    'load_average': os.getloadavg(),
  }
  with open(os.path.join(HERE, 'results', 'char_width.json'), 'w') as f:
    json.dump(out, f, indent=2)


if __name__ == '__main__':
  main()
