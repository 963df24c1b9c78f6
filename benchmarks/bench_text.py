"""Training throughput of the text models against a PyTorch equivalent, in one process.

Two models, each in bilstm_jax (`bilstm_jax.models.text`) and in PyTorch as PyTorch
users write it (`nn.Embedding`, a character CNN, `nn.LSTM` over `pack_padded_sequence`,
`torchcrf.CRF`), with the same sizes, the same batches and Adam:

  pos  the UD tagger of configs/pos_ud.py: words 100 + char CNN 50, 2 x BiLSTM 128, softmax
  ner  the CoNLL BiLSTM-CRF of configs/ner_conll2003.py: words 100 + char CNN 50, BiLSTM 128,
       CRF
  ner_glove  configs/ner_conll2003.py:glove: the same with fine-tuned 50d word vectors. In
       bilstm_jax each batch carries every word's pretrained vector (float16, from the host)
       and the model adds a trained offset; in PyTorch, as its users write it, an
       nn.Embedding of the vectors' size initialised from them and fine-tuned.

Batches: 32 sentences with lengths drawn from a UD/CoNLL-like distribution (mean ~16
words), word ids and 1-12 characters per word at random. The vocabulary sizes are the real
ones' order (words 20k, chars 100). Dropout is off in both, so they do the same arithmetic.
`--batching` says how sentences become batches, the same batches for both frameworks:

  buckets  as train.py batches them (`bilstm_jax.data.batching.epoch_plan` with the
           configs' 6 least-padding length buckets): a batch holds sentences of one
           bucket, padded to its boundary;
  random   32 sentences at random, padded to the longest rounded up to 8 (about half of
           the steps are padding, which bilstm_jax computes over and packed PyTorch skips).

Each framework runs about `--steps` timed steps after warm-up on every shape, alternating.

  PYTHONPATH=. python benchmarks/bench_text.py [--steps 30] [--rounds 2] [--batching both]

Prints a table and writes benchmarks/results/text.json (`--output` names another file).
Figures from a loaded shared machine are not valid comparisons: the JSON records the load
average.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bilstm_jax.data import batching as batching_lib
from bilstm_jax.heads import crf as crf_lib
from bilstm_jax.models.text import TextEncoder, TextTagger

HERE = os.path.dirname(os.path.abspath(__file__))
WORDS, CHARS, WIDTH, BATCH = 20000, 100, 12, 32
MODELS = {
  'pos': {'num_layers': 2, 'num_tags': 17, 'crf': False},
  'ner': {'num_layers': 1, 'num_tags': 9, 'crf': True},
  'ner_glove': {'num_layers': 1, 'num_tags': 9, 'crf': True, 'vectors': 50},
}


def make_batches(num: int, seed: int, num_tags: int, batching: str = 'buckets') -> list[dict]:
  """About `num` batches of BATCH sentences (see the module docstring for `batching`)."""
  rng = np.random.default_rng(seed)
  pool = np.clip(rng.gamma(2.0, 8.0, num * BATCH).astype(np.int32), 1, 60)
  if batching == 'buckets':
    buckets = batching_lib.Buckets.from_lengths(pool, 6)
    plan = batching_lib.epoch_plan(pool, BATCH, seed=seed, buckets=buckets)
    shapes = zip(plan.indices, plan.times, strict=True)
  elif batching == 'random':
    rows = pool.reshape(num, BATCH)
    shapes = (
      (np.arange(k * BATCH, (k + 1) * BATCH), int(-(-r.max() // 8) * 8)) for k, r in enumerate(rows)
    )
  else:
    raise ValueError(f'Unknown batching {batching!r}.')
  out = []
  for idx, time_ in shapes:
    lengths = pool[idx]
    mask = np.arange(time_)[None] < lengths[:, None]
    words = np.where(mask, rng.integers(2, WORDS, (BATCH, time_)), 0).astype(np.int32)
    wl = rng.integers(1, WIDTH + 1, (BATCH, time_))
    chars = rng.integers(1, CHARS, (BATCH, time_, WIDTH))
    chars = np.where((np.arange(WIDTH) < wl[..., None]) & mask[..., None], chars, 0)
    tags = np.where(mask, rng.integers(0, num_tags, (BATCH, time_)), 0).astype(np.int32)
    # 90% of the words have a pretrained vector (GloVe covers ~90% of CoNLL's tokens).
    has = mask & (rng.random((BATCH, time_)) < 0.9)
    vectors = np.where(has[..., None], rng.normal(size=(BATCH, time_, 50)), 0).astype(np.float16)
    out.append(
      {
        'words': words, 'chars': chars.astype(np.int32), 'lengths': lengths, 'tags': tags,
        'vectors': vectors,
      }
    )  # fmt: skip
  return out


# --------------------------------------------------------------------------------- JAX


def jax_trainer(spec: dict):
  dim = spec.get('vectors', 0)
  enc = TextEncoder(
    vocab_size=WORDS, hidden_size=128, num_layers=spec['num_layers'], embed_size=dim or 100,
    char_vocab_size=CHARS, char_features=50, vectors_dim=dim, vectors_trainable=True,
  )  # fmt: skip
  model = TextTagger(enc, num_tags=spec['num_tags'], crf=spec['crf'])
  tx = optax.adam(1e-3)

  def loss_fn(params, b):
    vectors = b['vectors'] if dim else None
    out = model.apply(params, b['words'], b['lengths'], b['chars'], vectors)
    if spec['crf']:
      scores = (out['transitions'], out['start'], out['end'])
      ll = crf_lib.crf_log_likelihood(out['emissions'], b['tags'], b['lengths'], *scores)
      return -ll.sum() / b['lengths'].sum()
    mask = jnp.arange(b['words'].shape[1])[None] < b['lengths'][:, None]
    ce = optax.softmax_cross_entropy_with_integer_labels(out, b['tags'])
    return jnp.where(mask, ce, 0).sum() / mask.sum()

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def step(params, opt, b):
    loss, grads = jax.value_and_grad(loss_fn)(params, b)
    updates, opt = tx.update(grads, opt, params)
    return optax.apply_updates(params, updates), opt, loss

  b0 = make_batches(1, 0, spec['num_tags'], 'random')[0]
  b0 = {k: v for k, v in b0.items() if dim or k != 'vectors'}
  params = model.init(jax.random.key(0), *(b0.get(k) for k in ('words', 'lengths', 'chars')),
                      b0.get('vectors'))  # fmt: skip
  state = [params, tx.init(params)]

  def run(b):
    b = b if dim else {k: v for k, v in b.items() if k != 'vectors'}
    state[0], state[1], loss = step(state[0], state[1], b)
    return loss

  return run, lambda x: jax.block_until_ready(x)


# ----------------------------------------------------------------------------- PyTorch


def torch_trainer(spec: dict, threads: int):
  import torch
  from torch import nn
  from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
  from torchcrf import CRF

  class CharCNN(nn.Module):
    def __init__(self):
      super().__init__()
      self.embed = nn.Embedding(CHARS, 30, padding_idx=0)
      self.conv = nn.Conv1d(30, 50, 3, padding=1)

    def forward(self, chars):
      b, t, w = chars.shape
      x = self.conv(self.embed(chars.view(b * t, w)).transpose(1, 2))  # [bt, 50, w]
      x = x.masked_fill((chars.view(b * t, 1, w) == 0), float('-inf')).max(2).values
      return torch.where(torch.isinf(x), torch.zeros_like(x), x).view(b, t, 50)

  class Tagger(nn.Module):
    def __init__(self):
      super().__init__()
      dim = spec.get('vectors', 0) or 100
      self.embed = nn.Embedding(WORDS, dim, padding_idx=0)  # from the vectors, fine-tuned
      self.chars = CharCNN()
      self.lstm = nn.LSTM(dim + 50, 128, spec['num_layers'], batch_first=True, bidirectional=True)
      self.head = nn.Linear(256, spec['num_tags'])
      self.crf = CRF(spec['num_tags'], batch_first=True) if spec['crf'] else None

    def forward(self, words, chars, lengths, tags):
      x = torch.cat([self.embed(words), self.chars(chars)], -1)
      packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
      y, _ = self.lstm(packed)
      y, _ = pad_packed_sequence(y, batch_first=True, total_length=words.shape[1])
      logits = self.head(y)
      mask = words > 0
      if self.crf is not None:
        return -self.crf(logits, tags, mask=mask, reduction='sum') / mask.sum()
      ce = nn.functional.cross_entropy(logits.transpose(1, 2), tags, reduction='none')
      return (ce * mask).sum() / mask.sum()

  if threads > 0:
    # On a shared, loaded machine OpenMP's spinning threads thrash (benchmarks/NOTES.md).
    torch.set_num_threads(threads)
  torch.manual_seed(0)
  model = Tagger()
  opt = torch.optim.Adam(model.parameters(), 1e-3)

  def run(b):
    words, chars, tags = (torch.from_numpy(b[k]).long() for k in ('words', 'chars', 'tags'))
    lengths = torch.from_numpy(b['lengths']).long()
    opt.zero_grad()
    loss = model(words, chars, lengths, tags)
    loss.backward()
    opt.step()
    return loss

  return run, lambda x: float(x.detach())


def measure(run, sync, batches) -> float:
  """Tokens per second over `batches` (every shape already compiled / warmed)."""
  start = time.perf_counter()
  loss = None
  for b in batches:
    loss = run(b)
  sync(loss)
  return sum(int(b['lengths'].sum()) for b in batches) / (time.perf_counter() - start)


def _compare(trainers: dict, batches: list[dict], rounds: int) -> dict:
  """Warms every shape up, then times the frameworks in alternating rounds."""
  warm = {}
  for fw, (run, sync) in trainers.items():  # every padded length once: compile, warm up
    start = time.perf_counter()
    seen = {}
    for b in batches:
      seen.setdefault(b['words'].shape[1], b)
    sync([run(b) for b in seen.values()][-1])
    warm[fw] = time.perf_counter() - start
  rates = {fw: [] for fw in trainers}
  for r in range(rounds):
    for fw in list(trainers) if r % 2 == 0 else list(trainers)[::-1]:
      rates[fw].append(measure(*trainers[fw], batches))
  out = {
    fw: {'tokens_per_s': float(np.median(v)), 'rounds': v, 'warmup_s': warm[fw]}
    for fw, v in rates.items()
  }
  out['speedup'] = out['bilstm_jax']['tokens_per_s'] / out['pytorch']['tokens_per_s']
  out['batches'] = len(batches)
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--steps', type=int, default=30)
  parser.add_argument('--rounds', type=int, default=2)
  parser.add_argument('--models', default='pos,ner')
  parser.add_argument('--torch-threads', type=int, default=0, help='0: torch default')
  parser.add_argument('--batching', default='both', choices=('buckets', 'random', 'both'))
  parser.add_argument('--output', default='text.json', help='file name in benchmarks/results')
  args = parser.parse_args()
  results = {}
  kinds = ('buckets', 'random') if args.batching == 'both' else (args.batching,)
  for name in args.models.split(','):
    spec = MODELS[name]
    trainers = {'bilstm_jax': jax_trainer(spec), 'pytorch': torch_trainer(spec, args.torch_threads)}
    for kind in kinds:
      batches = make_batches(args.steps, 1, spec['num_tags'], kind)
      results.setdefault(kind, {})[name] = _compare(trainers, batches, args.rounds)
      results[kind][name]['padding'] = 1 - sum(int(b['lengths'].sum()) for b in batches) / sum(
        b['words'].size for b in batches
      )
  head = ('batching', 'model', 'padding', 'bilstm_jax tok/s', 'pytorch tok/s', 'speedup')
  print(f'{head[0]:9} {head[1]:6} {head[2]:>8} {head[3]:>17} {head[4]:>14} {head[5]:>8}')
  for kind, by_model in results.items():
    for name, r in by_model.items():
      jx, pt = r['bilstm_jax']['tokens_per_s'], r['pytorch']['tokens_per_s']
      print(f'{kind:9} {name:6} {r["padding"]:8.1%} {jx:17.0f} {pt:14.0f} {r["speedup"]:8.2f}')
  out = {
    'results': results,
    'steps': args.steps,
    'rounds': args.rounds,
    'batch': BATCH,
    'torch_threads': args.torch_threads,
    'batching': args.batching,
    'load_average': os.getloadavg(),
    'jax': jax.__version__,
  }
  os.makedirs(os.path.join(HERE, 'results'), exist_ok=True)
  with open(os.path.join(HERE, 'results', args.output), 'w') as f:
    json.dump(out, f, indent=2)


if __name__ == '__main__':
  main()
