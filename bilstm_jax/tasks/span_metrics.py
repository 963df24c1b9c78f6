"""Entity spans on the device: conlleval's rules as array operations, so span precision,
recall and F1 are ratios of sums (`eval_sums`) and `train.metric=dev_f1` works.

The tags are named in BIO/IOB2 or BIOES (`scheme_tables` maps names to prefix and type
codes); the rules match `bilstm_jax.data.tag_schemes.spans`, checked against seqeval.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from bilstm_jax.tasks import losses

_PREFIX = {'O': 0, 'B': 1, 'I': 2, 'E': 3, 'S': 4}


def scheme_tables(tag_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """(prefix code int32[tags]: O 0, B 1, I 2, E 3, S 4; entity type int32[tags], 0 for O)."""
  prefixes, kinds, types = [], [], {'': 0}
  for name in tag_names:
    prefix, _, kind = name.partition('-')
    if name == 'O' or prefix not in _PREFIX or not kind:
      prefix, kind = 'O', ''
    prefixes.append(_PREFIX[prefix])
    kinds.append(types.setdefault(kind, len(types)))
  return np.array(prefixes, np.int32), np.array(kinds, np.int32)


def span_marks(tags: jax.Array, lengths: jax.Array, prefix_of, type_of):
  """Where conlleval's entities start, their type, and where each one ends (traceable).

  Args:
    tags: int[batch, time] tag ids (anything at t >= lengths, e.g. -1).
    lengths: int[batch].
    prefix_of, type_of: the tables of `scheme_tables`.

  Returns:
    (starts bool[batch, time], kinds int32[batch, time], stop int32[batch, time]): `stop`
    at a start is the index of the entity's last token.
  """
  time = tags.shape[1]
  valid = losses.step_mask(lengths, time)
  safe = jnp.clip(tags, 0, len(prefix_of) - 1)
  p = jnp.where(valid, jnp.asarray(prefix_of)[safe], 0)
  k = jnp.where(valid, jnp.asarray(type_of)[safe], 0)
  prev_p = jnp.pad(p, ((0, 0), (1, 0)))[:, :-1]
  prev_k = jnp.pad(k, ((0, 0), (1, 0)))[:, :-1]
  inside = p != 0
  starts = inside & ((p == 1) | (p == 4) | (prev_p == 0) | (prev_p == 3) | (prev_p == 4))
  starts = starts | (inside & (prev_k != k))
  next_p = jnp.pad(p, ((0, 0), (0, 1)))[:, 1:]
  next_starts = jnp.pad(starts, ((0, 0), (0, 1)))[:, 1:]
  ends = inside & ((next_p == 0) | next_starts)
  idx = jnp.broadcast_to(jnp.arange(time, dtype=jnp.int32), tags.shape)
  stop = jax.lax.cummin(jnp.where(ends, idx, time), axis=1, reverse=True)
  return starts, k, stop


def span_sums(gold, predicted, lengths, prefix_of, type_of) -> dict:
  """Entity 'precision', 'recall' and 'f1' as (sum, count) pairs over a batch (conlleval).

  F1 = 2 correct / (gold + predicted), so sums over batches give the corpus F1 exactly.
  """
  gs, gk, ge = span_marks(gold, lengths, prefix_of, type_of)
  ps, pk, pe = span_marks(predicted, lengths, prefix_of, type_of)
  correct = (gs & ps & (gk == pk) & (ge == pe)).sum().astype(jnp.float32)
  n_gold, n_pred = gs.sum().astype(jnp.float32), ps.sum().astype(jnp.float32)
  return {
    'precision': (correct, n_pred),
    'recall': (correct, n_gold),
    'f1': (2 * correct, n_gold + n_pred),
  }
