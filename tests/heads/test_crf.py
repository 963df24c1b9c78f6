"""CRF head: against brute-force enumeration, against pytorch-crf, masking, constraints."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from bilstm_jax.heads import crf as crf_lib

NUM_TAGS = 3
LENGTHS = np.array([4, 0, 1, 3], np.int32)  # ragged, with the 0 and 1 edge cases
TIME = 4


def _random_problem(seed, batch=4, time=TIME, num_tags=NUM_TAGS, dtype=np.float32):
  rng = np.random.default_rng(seed)
  return dict(
    emissions=rng.normal(size=(batch, time, num_tags)).astype(dtype),
    transitions=rng.normal(size=(num_tags, num_tags)).astype(dtype),
    start=rng.normal(size=num_tags).astype(dtype),
    end=rng.normal(size=num_tags).astype(dtype),
  )


def _path_score(p, b, path):
  """Score of one path, written out from the definition."""
  if not path:
    return 0.0
  s = p['start'][path[0]] + p['end'][path[-1]]
  s += sum(p['emissions'][b, t, y] for t, y in enumerate(path))
  s += sum(p['transitions'][a, c] for a, c in itertools.pairwise(path))
  return float(s)


def _all_paths(length, num_tags=NUM_TAGS):
  return list(itertools.product(range(num_tags), repeat=int(length)))


def _args(p):
  return p['transitions'], p['start'], p['end']


def test_log_partition_equals_enumeration():
  p = _random_problem(0, dtype=np.float64)
  with jax.enable_x64(True):
    got = np.asarray(crf_lib.crf_log_partition(p['emissions'], LENGTHS, *_args(p)))
  want = [
    np.logaddexp.reduce([_path_score(p, b, list(y)) for y in _all_paths(n)])
    for b, n in enumerate(LENGTHS)
  ]
  np.testing.assert_allclose(got, want, rtol=1e-12)
  assert got[1] == 0.0  # length 0


def test_log_likelihood_sums_to_one_over_all_paths():
  p = _random_problem(1, dtype=np.float64)
  n = 3
  paths = np.array(_all_paths(n), np.int32)
  emissions = np.repeat(p['emissions'][:1, :n], len(paths), axis=0)
  lengths = np.full(len(paths), n, np.int32)
  with jax.enable_x64(True):
    ll = crf_lib.crf_log_likelihood(emissions, paths, lengths, *_args(p))
  np.testing.assert_allclose(np.exp(ll).sum(), 1.0, rtol=1e-12)


def test_sequence_score_and_viterbi_equal_enumeration():
  p = _random_problem(2, dtype=np.float64)
  rng = np.random.default_rng(2)
  tags = rng.integers(0, NUM_TAGS, size=(len(LENGTHS), TIME)).astype(np.int32)
  with jax.enable_x64(True):
    scores = crf_lib.sequence_score(p['emissions'], tags, LENGTHS, *_args(p))
    best, best_scores = crf_lib.viterbi_decode(p['emissions'], LENGTHS, *_args(p))
  for b, n in enumerate(LENGTHS):
    np.testing.assert_allclose(scores[b], _path_score(p, b, list(tags[b, :n])), rtol=1e-12)
    candidates = _all_paths(n)
    want = max(candidates, key=lambda y, b=b: _path_score(p, b, list(y)))
    np.testing.assert_array_equal(best[b, :n], want)
    np.testing.assert_allclose(best_scores[b], _path_score(p, b, list(want)), rtol=1e-12)
    assert (np.asarray(best[b, n:]) == crf_lib.PAD_TAG).all()
  assert best.dtype == jnp.int32


def test_padding_never_changes_results():
  p = _random_problem(3)
  rng = np.random.default_rng(3)
  tags = rng.integers(0, NUM_TAGS, size=(len(LENGTHS), TIME)).astype(np.int32)
  pad = np.arange(TIME)[None, :] >= LENGTHS[:, None]
  junk_emissions = np.where(pad[..., None], np.inf, p['emissions']).astype(np.float32)
  junk_tags = np.where(pad, -7, tags).astype(np.int32)

  @jax.jit
  def everything(emissions, tags):
    ll = crf_lib.crf_log_likelihood(emissions, tags, LENGTHS, *_args(p))
    grad = jax.grad(lambda e: crf_lib.crf_log_likelihood(e, tags, LENGTHS, *_args(p)).sum())(
      emissions
    )
    return ll, crf_lib.viterbi_decode(emissions, LENGTHS, *_args(p)), grad

  clean, junk = everything(p['emissions'], tags), everything(junk_emissions, junk_tags)
  chex.assert_trees_all_close(clean, junk)
  assert np.isfinite(junk[2]).all() and (np.asarray(junk[2])[pad] == 0).all()

  # Padding a batch further (longer time axis) changes nothing either.
  longer = np.concatenate([p['emissions'], rng.normal(size=(4, 2, NUM_TAGS))], 1)
  longer_tags = np.concatenate([tags, np.zeros((4, 2), np.int32)], 1)
  wider = everything(longer.astype(np.float32), longer_tags)
  chex.assert_trees_all_close(wider[0], clean[0])
  chex.assert_trees_all_close(wider[1][0][:, :TIME], clean[1][0])
  chex.assert_trees_all_close(wider[1][1], clean[1][1])


def test_empty_time_axis():
  p = _random_problem(4)
  emissions = np.zeros((2, 0, NUM_TAGS), np.float32)
  lengths = np.zeros(2, np.int32)
  ll = crf_lib.crf_log_likelihood(emissions, np.zeros((2, 0), np.int32), lengths, *_args(p))
  tags, scores = crf_lib.viterbi_decode(emissions, lengths, *_args(p))
  chex.assert_trees_all_close((ll, scores), (np.zeros(2), np.zeros(2)))
  assert tags.shape == (2, 0) and tags.dtype == jnp.int32
  # The scores keep the emissions' dtype, a low-precision one too.
  args = [a.astype(jnp.bfloat16) for a in _args(p)]
  emissions = emissions.astype(jnp.bfloat16)
  score = crf_lib.sequence_score(emissions, np.zeros((2, 0), np.int32), lengths, *args)
  _, best = crf_lib.viterbi_decode(emissions, lengths, *args)
  log_z = crf_lib.crf_log_partition(emissions, lengths, *args)
  assert score.dtype == best.dtype == log_z.dtype == jnp.bfloat16


@pytest.mark.slow  # finite differences, each a compiled call
def test_gradients_numerically():
  p = _random_problem(5, dtype=np.float64)
  tags = np.random.default_rng(5).integers(0, NUM_TAGS, (len(LENGTHS), TIME)).astype(np.int32)

  def f(emissions, transitions, start, end):
    return crf_lib.crf_log_likelihood(emissions, tags, LENGTHS, transitions, start, end)

  with jax.enable_x64(True):
    check_grads(f, (p['emissions'], *_args(p)), order=1, modes=['rev'], eps=1e-4)


def test_gradient_of_log_partition_is_marginals():
  """d log Z / d emissions[t, y] = p(y_t = y): checked against enumerated marginals."""
  p = _random_problem(6, dtype=np.float64)
  b, n = 0, int(LENGTHS[0])
  with jax.enable_x64(True):
    grad = jax.grad(lambda e: crf_lib.crf_log_partition(e, LENGTHS, *_args(p))[b])(
      jnp.asarray(p['emissions'])
    )
  paths = _all_paths(n)
  weights = np.exp([_path_score(p, b, list(y)) for y in paths])
  marginals = np.zeros((n, NUM_TAGS))
  for y, w in zip(paths, weights, strict=True):
    marginals[np.arange(n), y] += w
  np.testing.assert_allclose(grad[b], marginals / weights.sum(), rtol=1e-10)


@pytest.mark.slow  # importing torch
def test_matches_pytorch_crf():
  torch = pytest.importorskip('torch')
  torchcrf = pytest.importorskip('torchcrf')
  num_tags, time = 5, 7
  lengths = np.array([7, 1, 4], np.int32)  # torchcrf needs the first step of every mask on
  p = _random_problem(7, batch=3, time=time, num_tags=num_tags)
  tags = np.random.default_rng(7).integers(0, num_tags, (3, time)).astype(np.int64)

  ref = torchcrf.CRF(num_tags, batch_first=True)
  with torch.no_grad():
    ref.transitions.copy_(torch.from_numpy(p['transitions']))
    ref.start_transitions.copy_(torch.from_numpy(p['start']))
    ref.end_transitions.copy_(torch.from_numpy(p['end']))
  mask = torch.from_numpy(np.arange(time)[None, :] < lengths[:, None])
  emissions_t = torch.from_numpy(p['emissions'])
  with torch.no_grad():
    want_ll = ref(emissions_t, torch.from_numpy(tags), mask, reduction='none').numpy()
  want_paths = ref.decode(emissions_t, mask)

  ll = crf_lib.crf_log_likelihood(p['emissions'], tags.astype(np.int32), lengths, *_args(p))
  paths, _ = crf_lib.viterbi_decode(p['emissions'], lengths, *_args(p))
  np.testing.assert_allclose(ll, want_ll, atol=1e-5, rtol=1e-5)
  for b, n in enumerate(lengths):
    assert list(np.asarray(paths[b, :n])) == want_paths[b]


BIO_TAGS = ['<pad>', 'O', 'B-PER', 'I-PER', 'B-LOC', 'I-LOC']


def test_allowed_transitions_bio():
  allowed = crf_lib.allowed_transitions(BIO_TAGS, 'BIO')
  i = {t: k for k, t in enumerate(BIO_TAGS)}
  tr = allowed.transitions
  assert tr[i['B-PER'], i['I-PER']] and tr[i['I-PER'], i['I-PER']] and tr[i['O'], i['B-LOC']]
  assert tr[i['I-PER'], i['B-PER']] and tr[i['B-LOC'], i['O']]
  assert not tr[i['O'], i['I-PER']] and not tr[i['B-LOC'], i['I-PER']]
  assert not tr[:, i['<pad>']].any() and not tr[i['<pad>']].any()
  np.testing.assert_array_equal(allowed.start, [0, 1, 1, 0, 1, 0])
  np.testing.assert_array_equal(allowed.end, [0, 1, 1, 1, 1, 1])


def test_allowed_transitions_bioes():
  names = ['O', 'B-X', 'I-X', 'E-X', 'S-X']
  allowed = crf_lib.allowed_transitions(names, 'BIOES')
  want = np.array(
    [  # to: O B I E S
      [1, 1, 0, 0, 1],  # from O
      [0, 0, 1, 1, 0],  # from B
      [0, 0, 1, 1, 0],  # from I
      [1, 1, 0, 0, 1],  # from E
      [1, 1, 0, 0, 1],  # from S
    ],
    bool,
  )
  np.testing.assert_array_equal(allowed.transitions, want)
  np.testing.assert_array_equal(allowed.start, [1, 1, 0, 0, 1])
  np.testing.assert_array_equal(allowed.end, [1, 0, 0, 1, 1])
  with pytest.raises(ValueError, match="'E-X'"):
    crf_lib.allowed_transitions(names, 'BIO')
  with pytest.raises(ValueError, match='scheme'):
    crf_lib.allowed_transitions(names, 'IOB9')


def test_constrained_decoding_never_breaks_bio():
  allowed = crf_lib.allowed_transitions(BIO_TAGS, 'BIO')
  model = crf_lib.CRF(len(BIO_TAGS), allowed_transitions=allowed)
  rng = np.random.default_rng(8)
  # Emissions favouring I- tags make unconstrained decoding break the scheme.
  emissions = rng.normal(size=(3, 7, len(BIO_TAGS))).astype(np.float32) * 3
  emissions[..., [3, 5]] += 2.0
  lengths = np.array([7, 5, 1], np.int32)
  params = model.init(jax.random.key(0), emissions, np.zeros((3, 7), np.int32), lengths)
  paths, _ = model.apply(params, emissions, lengths, method=crf_lib.CRF.decode)
  plain, _ = crf_lib.viterbi_decode(
    emissions, lengths, *crf_lib.CRF(len(BIO_TAGS)).apply(params, method=crf_lib.CRF.scores)
  )
  broken = 0
  for b, n in enumerate(lengths):
    for path, check in ((paths, True), (plain, False)):
      y = list(np.asarray(path[b, :n]))
      ok = allowed.start[y[0]] and allowed.end[y[-1]]
      ok = ok and all(allowed.transitions[a, c] for a, c in itertools.pairwise(y))
      if check:
        assert ok, [BIO_TAGS[k] for k in y]
      broken += not ok
  assert broken  # the constraints did something


@pytest.mark.slow  # Flax init and apply
def test_module_matches_functions_and_checks_shapes():
  model = crf_lib.CRF(NUM_TAGS)
  p = _random_problem(9)
  tags = np.zeros((len(LENGTHS), TIME), np.int32)
  params = model.init(jax.random.key(1), p['emissions'], tags, LENGTHS)
  chex.assert_shape(params['params']['transitions'], (NUM_TAGS, NUM_TAGS))
  args = (params['params']['transitions'], params['params']['start'], params['params']['end'])
  apply = jax.jit(model.apply, static_argnames='method')
  chex.assert_trees_all_close(
    apply(params, p['emissions'], tags, LENGTHS),
    crf_lib.crf_log_likelihood(p['emissions'], tags, LENGTHS, *args),
  )
  chex.assert_trees_all_close(
    apply(params, p['emissions'], LENGTHS, method='log_partition'),
    crf_lib.crf_log_partition(p['emissions'], LENGTHS, *args),
  )
  with pytest.raises(ValueError, match='emissions'):
    model.apply(params, p['emissions'][..., :2], tags, LENGTHS)
  with pytest.raises(ValueError, match='allowed_transitions'):
    bad = crf_lib.allowed_transitions(['O', 'B-X'], 'BIO')
    crf_lib.CRF(NUM_TAGS, allowed_transitions=bad).init(
      jax.random.key(1), p['emissions'], tags, LENGTHS
    )


def test_module_init_and_gold_tag_checks():
  n = 8
  emissions = np.zeros((2, 3, n), np.float32)
  tags = np.array([[0, 7, -1], [1, -1, -1]], np.int32)  # -1 right at each sequence's end
  lengths = np.array([2, 1], np.int32)
  model = crf_lib.CRF(n)
  params = model.init(jax.random.key(0), emissions, tags, lengths)['params']
  for name, shape in (('transitions', (n, n)), ('start', (n,)), ('end', (n,))):
    a = np.asarray(params[name])
    assert a.shape == shape and a.dtype == np.float32
    assert -0.1 <= a.min() < -0.01 and 0.01 < a.max() <= 0.1, name  # U(-0.1, 0.1)
  half = crf_lib.CRF(n, param_dtype=jnp.bfloat16).init(jax.random.key(0), emissions, tags, lengths)
  assert {a.dtype for a in jax.tree.leaves(half)} == {jnp.dtype(jnp.bfloat16)}
  # Padding past the lengths is never checked; gold tags out of range or of the wrong shape are.
  assert np.isfinite(model.apply({'params': params}, emissions, tags, lengths)).all()
  with pytest.raises(ValueError, match=r'CRF tags must lie in \[0, 8\); got 8 at \[1, 0\]'):
    model.apply({'params': params}, emissions, _set(tags, 8), lengths)
  with pytest.raises(
    ValueError, match=r'CRF tags must be int\[batch, time\]=\(2, 3\); got shape \(2, 2\)'
  ):
    model.apply({'params': params}, emissions, tags[:, :2], lengths)


def _set(tags, value):
  out = tags.copy()
  out[1, 0] = value
  return out


@pytest.mark.slow  # compiles several programs
def test_jit_vmap_grad():
  model = crf_lib.CRF(len(BIO_TAGS), crf_lib.allowed_transitions(BIO_TAGS, 'BIO'))
  p = _random_problem(10, num_tags=len(BIO_TAGS))
  tags = np.ones((len(LENGTHS), TIME), np.int32)
  params = model.init(jax.random.key(2), p['emissions'], tags, LENGTHS)

  @jax.jit
  def loss(params, emissions):
    return -model.apply(params, emissions, tags, LENGTHS).mean()

  grads = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, p['emissions'])
  assert all(np.isfinite(g).all() for g in jax.tree.leaves(grads))
  # Forbidden entries are constants: no gradient reaches their parameters.
  allowed = model.allowed_transitions
  assert (np.asarray(grads[0]['params']['transitions'])[~allowed.transitions] == 0).all()
  assert np.abs(np.asarray(grads[0]['params']['transitions'])[allowed.transitions]).sum() > 0

  # An ensemble of CRFs: vmap over stacked parameters equals a loop.
  stacked = jax.vmap(lambda k: model.init(k, p['emissions'], tags, LENGTHS))(
    jax.random.split(jax.random.key(3), 2)
  )
  decode = jax.jit(jax.vmap(lambda v: model.apply(v, p['emissions'], LENGTHS, method='decode')))
  got = decode(stacked)
  for k in range(2):
    one = jax.tree.map(lambda x, k=k: x[k], stacked)
    want = model.apply(one, p['emissions'], LENGTHS, method='decode')
    chex.assert_trees_all_close((got[0][k], got[1][k]), want)
  # vmap over the batch axis of single sequences gives the batched result.
  single = jax.vmap(
    lambda e, y, n: crf_lib.crf_log_likelihood(e[None], y[None], n[None], *_args(p))[0]
  )
  chex.assert_trees_all_close(
    single(p['emissions'], tags, LENGTHS),
    crf_lib.crf_log_likelihood(p['emissions'], tags, LENGTHS, *_args(p)),
    rtol=1e-6,
  )
