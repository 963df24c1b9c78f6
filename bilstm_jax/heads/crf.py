"""A linear-chain conditional random field over per-step scores, for any encoder.

The model scores a tag sequence y_0 .. y_{L-1} of a sequence of length L as

  score(y) = start[y_0] + sum_t emissions[t, y_t] + sum_{t>0} transitions[y_{t-1}, y_t]
             + end[y_{L-1}]

and p(y | x) = exp(score(y)) / Z with Z summed over all num_tags**L sequences.
`transitions` is indexed (from, to), as in `torchcrf.CRF`, and the numbers agree with it.

Two ways in:
  * pure functions on arrays (`crf_log_likelihood`, `crf_log_partition`, `viterbi_decode`,
    `sequence_score`), for JAX code without Flax or with parameters kept elsewhere;
  * the Flax module `CRF`, which holds the parameters and can forbid transitions (e.g.
    `O -> I-PER` in BIO) with the masks of `allowed_transitions`.

Batches are padded: positions t >= lengths[b] never change a result, whatever their
emissions or tags, and lengths of 0 are allowed (log Z = 0, score 0). Everything works
under `jax.jit`, `jax.vmap` and `jax.grad`.

Example:
  >>> crf = CRF(num_tags=5)
  >>> emissions = jnp.zeros((2, 7, 5))  # e.g. a Dense layer on BiLSTM outputs
  >>> tags, lengths = jnp.zeros((2, 7), jnp.int32), jnp.array([7, 3])
  >>> params = crf.init(jax.random.key(0), emissions, tags, lengths)
  >>> loss = -crf.apply(params, emissions, tags, lengths).mean()
  >>> best, scores = crf.apply(params, emissions, lengths, method=CRF.decode)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# Score given to a forbidden transition. Finite so that gradients and log Z stay finite even
# when a gold sequence breaks a constraint; large enough that exp(DISALLOWED) underflows to
# 0 in float32 next to any realistic path score.
DISALLOWED = -1e4

# Tag written by `viterbi_decode` at padded positions (t >= length).
PAD_TAG = -1


class AllowedTransitions(NamedTuple):
  """Which moves a CRF may make: True is allowed.

  Attributes:
    transitions: bool[num_tags, num_tags], indexed (from, to).
    start: bool[num_tags], tags a sequence may start with.
    end: bool[num_tags], tags a sequence may end with.
  """

  transitions: np.ndarray
  start: np.ndarray
  end: np.ndarray


def _split_tag(name: str, scheme: str) -> tuple[str, str]:
  """('B', 'PER') for 'B-PER', ('O', '') for 'O'; ('<', '') for reserved names like '<pad>'."""
  if name == 'O':
    return 'O', ''
  if name.startswith('<') and name.endswith('>'):
    return '<', ''
  prefix, sep, kind = name.partition('-')
  if sep and kind and prefix in scheme:
    return prefix, kind
  raise ValueError(f'Tag {name!r} is not O or {"/".join(scheme)}-TYPE (scheme {scheme}).')


def allowed_transitions(tag_names: Sequence[str], scheme: str) -> AllowedTransitions:
  """Masks that keep decoded paths valid in a tagging scheme.

  In 'BIO' (IOB2) an `I-X` may only follow `B-X` or `I-X` (so never start a sequence). In
  'BIOES' an entity is `S-X` or `B-X I-X* E-X`: `I-X`/`E-X` only follow `B-X`/`I-X`, a
  sequence can neither start with `I-`/`E-` nor end with `B-`/`I-`. Reserved names in angle
  brackets (`<pad>`, as a `Vocabulary` puts at id 0) are never allowed anywhere: gold tags
  at valid positions are never padding.

  Args:
    tag_names: the name of each tag id, e.g. ['O', 'B-PER', 'I-PER'].
    scheme: 'BIO' (same as 'IOB2') or 'BIOES'.

  Returns:
    `AllowedTransitions` of numpy bool masks.

  Raises:
    ValueError: for an unknown scheme or a tag name that does not fit it.
  """
  schemes = {'BIO': 'BI', 'IOB2': 'BI', 'BIOES': 'BIES'}
  if scheme not in schemes:
    raise ValueError(f'Unknown tagging scheme {scheme!r}; expected one of {sorted(schemes)}.')
  parts = [_split_tag(name, schemes[scheme]) for name in tag_names]
  inside = ('I', 'E')  # prefixes that continue an entity

  def may_follow(prev: tuple[str, str], cur: tuple[str, str]) -> bool:
    if prev[0] == '<' or cur[0] == '<':
      return False
    if cur[0] in inside:
      return prev[0] in ('B', 'I') and prev[1] == cur[1]
    # An O, B or S may come after anything that has closed its entity.
    return scheme != 'BIOES' or prev[0] not in ('B', 'I')

  trans = np.array([[may_follow(p, c) for c in parts] for p in parts], bool).reshape(
    len(parts), len(parts)
  )
  start = np.array([p[0] not in ('<', *inside) for p in parts], bool)
  end_bad = ('<', 'B', 'I') if scheme == 'BIOES' else ('<',)
  end = np.array([p[0] not in end_bad for p in parts], bool)
  return AllowedTransitions(trans, start, end)


def apply_constraints(
  transitions: jax.Array, start: jax.Array, end: jax.Array, allowed: AllowedTransitions
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Replaces the scores of forbidden moves with `DISALLOWED`.

  `jnp.where`, not an added penalty, so forbidden entries get zero gradient and whatever
  their parameter values are, they never matter.

  Returns:
    (transitions, start, end) with the shapes and dtypes given.
  """

  def fill(a, m):
    return jnp.where(jnp.asarray(m), a, jnp.asarray(DISALLOWED, a.dtype))

  return (
    fill(transitions, allowed.transitions),
    fill(start, allowed.start),
    fill(end, allowed.end),
  )


def _valid_mask(lengths: jax.Array, time: int) -> jax.Array:
  """bool[batch, time]: True at t < lengths[b]."""
  return jnp.arange(time)[None, :] < lengths[:, None]


def sequence_score(
  emissions: jax.Array,
  tags: jax.Array,
  lengths: jax.Array,
  transitions: jax.Array,
  start: jax.Array,
  end: jax.Array,
) -> jax.Array:
  """The unnormalised score of given tag sequences.

  Args:
    emissions: float[batch, time, tags], per-step scores of each tag.
    tags: int[batch, time], the tag ids; values at t >= lengths[b] are ignored.
    lengths: int[batch], valid steps of each sequence, 0 <= lengths <= time.
    transitions: float[tags, tags], score of moving (from, to).
    start: float[tags], score of starting with each tag.
    end: float[tags], score of ending with each tag.

  Returns:
    float[batch]; 0 where lengths is 0.
  """
  emissions, tags, lengths, transitions, start, end = map(
    jnp.asarray, (emissions, tags, lengths, transitions, start, end)
  )
  batch, time, _ = emissions.shape
  if time == 0:
    return jnp.zeros((batch,), emissions.dtype)
  valid = _valid_mask(lengths, time)
  # Padding may hold any value (e.g. -1): make it a harmless index before gathering.
  tags = jnp.where(valid, tags, 0)
  emitted = jnp.take_along_axis(emissions, tags[..., None], axis=-1)[..., 0]
  score = jnp.sum(jnp.where(valid, emitted, 0), axis=1)
  moves = transitions[tags[:, :-1], tags[:, 1:]]
  score += jnp.sum(jnp.where(valid[:, 1:], moves, 0), axis=1)
  last = tags[jnp.arange(batch), jnp.maximum(lengths - 1, 0)]
  return score + jnp.where(lengths > 0, start[tags[:, 0]] + end[last], 0)


def crf_log_partition(
  emissions: jax.Array,
  lengths: jax.Array,
  transitions: jax.Array,
  start: jax.Array,
  end: jax.Array,
) -> jax.Array:
  """log Z: the log-sum-exp of the scores of all tag sequences (the forward algorithm).

  Args:
    emissions: float[batch, time, tags]; values at t >= lengths[b] are ignored.
    lengths: int[batch], 0 <= lengths <= time.
    transitions: float[tags, tags], as in `sequence_score`.
    start: float[tags], as in `sequence_score`.
    end: float[tags], as in `sequence_score`.

  Returns:
    float[batch]; 0 where lengths is 0.
  """
  emissions, lengths, transitions, start, end = map(
    jnp.asarray, (emissions, lengths, transitions, start, end)
  )
  batch, time, _ = emissions.shape
  if time == 0:
    return jnp.zeros((batch,), emissions.dtype)
  valid = _valid_mask(lengths, time)
  # Zeroed so that inf/NaN padding cannot leak into gradients through the masked branch.
  emissions = jnp.where(valid[..., None], emissions, 0)

  def step(alpha, inputs):
    emit, active = inputs  # [batch, tags], [batch]
    nxt = jax.nn.logsumexp(alpha[:, :, None] + transitions[None], axis=1) + emit
    # Past a sequence's end the carry is frozen, so `end` is added at its own last step.
    return jnp.where(active[:, None], nxt, alpha), None

  alpha0 = start[None] + emissions[:, 0]
  xs = (jnp.swapaxes(emissions[:, 1:], 0, 1), valid[:, 1:].T)
  alpha, _ = jax.lax.scan(step, alpha0, xs)
  return jnp.where(lengths > 0, jax.nn.logsumexp(alpha + end[None], axis=1), 0)


def crf_log_likelihood(
  emissions: jax.Array,
  tags: jax.Array,
  lengths: jax.Array,
  transitions: jax.Array,
  start: jax.Array,
  end: jax.Array,
) -> jax.Array:
  """log p(tags | emissions) of each sequence; the training loss is its negative mean.

  Args:
    emissions: float[batch, time, tags]; values at t >= lengths[b] are ignored.
    tags: int[batch, time], gold tag ids; values at t >= lengths[b] are ignored.
    lengths: int[batch], 0 <= lengths <= time.
    transitions: float[tags, tags], (from, to).
    start: float[tags].
    end: float[tags].

  Returns:
    float[batch], <= 0; exactly 0 where lengths is 0 (the empty sequence is certain).
  """
  return sequence_score(emissions, tags, lengths, transitions, start, end) - crf_log_partition(
    emissions, lengths, transitions, start, end
  )


def viterbi_decode(
  emissions: jax.Array,
  lengths: jax.Array,
  transitions: jax.Array,
  start: jax.Array,
  end: jax.Array,
) -> tuple[jax.Array, jax.Array]:
  """The highest-scoring tag sequence of each batch entry.

  Args:
    emissions: float[batch, time, tags]; values at t >= lengths[b] are ignored.
    lengths: int[batch], 0 <= lengths <= time.
    transitions: float[tags, tags], as in `sequence_score`.
    start: float[tags], as in `sequence_score`.
    end: float[tags], as in `sequence_score`.

  Returns:
    (tags, scores): tags int32[batch, time], `PAD_TAG` (-1) at every t >= lengths[b] so a
    padded position never equals a real tag; scores float[batch], the best path's
    `sequence_score` (0 for length 0).
  """
  emissions, lengths, transitions, start, end = map(
    jnp.asarray, (emissions, lengths, transitions, start, end)
  )
  batch, time, num_tags = emissions.shape
  if time == 0:
    return jnp.zeros((batch, 0), jnp.int32), jnp.zeros((batch,), emissions.dtype)
  valid = _valid_mask(lengths, time)
  emissions = jnp.where(valid[..., None], emissions, 0)
  keep = jnp.broadcast_to(jnp.arange(num_tags, dtype=jnp.int32), (batch, num_tags))

  def forward(delta, inputs):
    emit, active = inputs
    cand = delta[:, :, None] + transitions[None]  # [batch, from, to]
    back = jnp.argmax(cand, axis=1).astype(jnp.int32)
    nxt = jnp.max(cand, axis=1) + emit
    # Padded steps point each tag at itself, so backtracking walks through them unchanged.
    return jnp.where(active[:, None], nxt, delta), jnp.where(active[:, None], back, keep)

  delta0 = start[None] + emissions[:, 0]
  xs = (jnp.swapaxes(emissions[:, 1:], 0, 1), valid[:, 1:].T)
  delta, backs = jax.lax.scan(forward, delta0, xs)  # backs: [time - 1, batch, tags]
  final = delta + end[None]
  last = jnp.argmax(final, axis=1).astype(jnp.int32)
  score = jnp.where(lengths > 0, jnp.max(final, axis=1), 0)

  def backward(tag, back):
    prev = jnp.take_along_axis(back, tag[:, None], axis=1)[:, 0]
    return prev, prev

  _, earlier = jax.lax.scan(backward, last, backs, reverse=True)  # tags at 0 .. time - 2
  path = jnp.concatenate([earlier.T, last[:, None]], axis=1)
  return jnp.where(valid, path, PAD_TAG), score


def _uniform(scale: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)

  return init


class CRF(nn.Module):
  """A linear-chain CRF layer on per-step scores (e.g. a Dense layer over `BiLSTM` outputs).

  Parameters: `transitions[num_tags, num_tags]` (from, to), `start[num_tags]`,
  `end[num_tags]`, initialised U(-0.1, 0.1) like `torchcrf.CRF`.

  Attributes:
    num_tags: number of tags.
    allowed_transitions: optional `AllowedTransitions` (see `allowed_transitions`); forbidden
      moves score `DISALLOWED` in every method, so decoding never makes them.
    param_dtype: dtype of the parameters.

  Methods take emissions float[batch, time, num_tags] and lengths int[batch]; `__call__`
  gives the log-likelihood of gold tags, `decode` the Viterbi path, `log_partition` log Z.
  See the module docstring for an example.
  """

  num_tags: int
  allowed_transitions: AllowedTransitions | None = None
  param_dtype: Any = jnp.float32

  def setup(self):
    """Creates `transitions`, `start` and `end`, and checks `allowed_transitions` shapes."""
    init = _uniform(0.1)
    n = self.num_tags
    self.transitions = self.param('transitions', init, (n, n), self.param_dtype)
    self.start = self.param('start', init, (n,), self.param_dtype)
    self.end = self.param('end', init, (n,), self.param_dtype)
    if self.allowed_transitions is not None:
      shapes = tuple(np.shape(m) for m in self.allowed_transitions)
      if shapes != ((n, n), (n,), (n,)):
        raise ValueError(
          f'allowed_transitions for {n} tags must have shapes {((n, n), (n,), (n,))}; got {shapes}.'
        )

  def scores(self) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(transitions, start, end) with the constraints applied."""
    if self.allowed_transitions is None:
      return self.transitions, self.start, self.end
    return apply_constraints(self.transitions, self.start, self.end, self.allowed_transitions)

  def _check(self, emissions: jax.Array) -> None:
    if emissions.ndim != 3 or emissions.shape[-1] != self.num_tags:
      raise ValueError(
        f'CRF emissions must be [batch, time, {self.num_tags}]; got shape {emissions.shape}.'
      )

  def _check_tags(self, emissions: jax.Array, tags: jax.Array, lengths: jax.Array) -> None:
    """Gold tags must match the emissions' shape and, outside jit, lie in [0, num_tags) at
    valid steps (a gather would silently clamp an out-of-range tag)."""
    if tuple(tags.shape) != tuple(emissions.shape[:2]):
      raise ValueError(
        f'CRF tags must be int[batch, time]={tuple(emissions.shape[:2])}; got shape '
        f'{tuple(tags.shape)}.'
      )
    if isinstance(tags, jax.core.Tracer) or isinstance(lengths, jax.core.Tracer):
      return
    t = np.asarray(tags)
    valid = np.arange(t.shape[1])[None, :] < np.asarray(lengths).reshape(-1, 1)
    bad = valid & ((t < 0) | (t >= self.num_tags))
    if bad.any():
      i = np.argwhere(bad)[0].tolist()
      raise ValueError(f'CRF tags must lie in [0, {self.num_tags}); got {t[tuple(i)]} at {i}.')

  def __call__(self, emissions: jax.Array, tags: jax.Array, lengths: jax.Array) -> jax.Array:
    """log p(tags | emissions): float[batch], see `crf_log_likelihood`."""
    self._check(emissions)
    self._check_tags(emissions, tags, lengths)
    return crf_log_likelihood(emissions, tags, lengths, *self.scores())

  def log_partition(self, emissions: jax.Array, lengths: jax.Array) -> jax.Array:
    """log Z: float[batch], see `crf_log_partition`."""
    self._check(emissions)
    return crf_log_partition(emissions, lengths, *self.scores())

  def decode(self, emissions: jax.Array, lengths: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(tags int32[batch, time] with -1 at padding, scores float[batch]); `viterbi_decode`."""
    self._check(emissions)
    return viterbi_decode(emissions, lengths, *self.scores())
