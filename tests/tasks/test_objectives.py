"""Objectives against hand-computed numpy on tiny batches, and a task composed of a source
of its own and `StepLabels` trained through the app."""

import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, tasks
from bilstm_jax.errors import DataFileError
from bilstm_jax.heads import ctc
from bilstm_jax.models import BiLSTMTagger
from bilstm_jax.tasks import CTCLabels, SequenceLabels, StepLabels, StepTargets
from tests.utils import tiny_config

RNG = np.random.default_rng(0)
LENGTHS = np.array([3, 1], np.int32)  # the second example: one real step of three


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _pair(pair):
  return float(pair[0]), float(pair[1])


def test_step_labels_against_numpy():
  logits = RNG.normal(size=(2, 3, 4)).astype(np.float32)
  labels = np.array([[1, 2, 3], [0, 9, 9]], np.int32)  # 9: padding, never read
  batch = {'labels': jnp.asarray(np.where(labels > 3, 0, labels)), 'lengths': LENGTHS}
  real = [(0, 0), (0, 1), (0, 2), (1, 0)]
  logp = _log_softmax(logits.astype(np.float64))
  ce = -sum(logp[b, t, labels[b, t]] for b, t in real)
  hits = sum(int(np.argmax(logits[b, t]) == labels[b, t]) for b, t in real)

  objective = StepLabels()
  total, weight = _pair(objective.loss(jnp.asarray(logits), batch))
  np.testing.assert_allclose((total, weight), (ce, 4.0), rtol=1e-5)
  sums = objective.eval_sums(jnp.asarray(logits), batch)
  assert set(sums) == set(objective.metrics) == {'loss', 'accuracy'}
  assert _pair(sums['accuracy']) == (hits, 4.0)
  assert objective.metric_modes == {'loss': 'min', 'accuracy': 'max'}

  preds = objective.predictions(jnp.asarray(logits), batch)
  want = np.argmax(logits, -1)
  want[1, 1:] = -1  # past the length
  np.testing.assert_array_equal(preds['labels'], want)
  np.testing.assert_allclose(preds['confidence'], np.exp(logp).max(-1), rtol=1e-5)
  assert objective.prediction_time_keys == ('labels', 'confidence') and objective.per_step


def test_step_labels_combine_averages_probabilities():
  members = RNG.normal(size=(3, 2, 3, 4)).astype(np.float32)
  probs = np.exp(_log_softmax(members.astype(np.float64))).mean(0)
  combined = StepLabels().combine(jnp.asarray(members))
  np.testing.assert_allclose(np.asarray(combined), np.log(probs), rtol=1e-5, atol=1e-6)


def test_step_labels_score_entity_spans():
  objective = StepLabels(entities=True, tag_names=('O', 'B-X', 'I-X'))
  assert objective.metrics == ('loss', 'accuracy', 'precision', 'recall', 'f1')
  labels = np.array([[1, 2, 0], [1, 0, 0]], np.int32)  # gold: two X spans
  predicted = np.array([[1, 2, 0], [0, 0, 0]])  # finds the first, misses the second
  logits = np.where(np.arange(3) == predicted[..., None], 5.0, 0.0).astype(np.float32)
  batch = {'labels': jnp.asarray(labels), 'lengths': np.array([3, 2], np.int32)}
  sums = objective.eval_sums(jnp.asarray(logits), batch)
  assert _pair(sums['precision']) == (1.0, 1.0)
  assert _pair(sums['recall']) == (1.0, 2.0)


def test_sequence_labels_against_numpy():
  logits = RNG.normal(size=(3, 4)).astype(np.float32)
  labels = np.array([2, 0, 1], np.int32)
  lengths = np.array([3, 0, 2], np.int32)  # the second: a padding example
  batch = {'labels': jnp.asarray(labels), 'lengths': lengths}
  logp = _log_softmax(logits.astype(np.float64))
  objective = SequenceLabels()
  total, weight = _pair(objective.loss(jnp.asarray(logits), batch))
  np.testing.assert_allclose((total, weight), (-logp[0, 2] - logp[2, 1], 2.0), rtol=1e-5)
  hits = int(np.argmax(logits[0]) == 2) + int(np.argmax(logits[2]) == 1)
  assert _pair(objective.eval_sums(jnp.asarray(logits), batch)['accuracy']) == (hits, 2.0)
  preds = objective.predictions(jnp.asarray(logits), batch)
  np.testing.assert_array_equal(preds['label'], np.argmax(logits, -1))
  np.testing.assert_allclose(preds['probabilities'], np.exp(logp), rtol=1e-5)
  np.testing.assert_allclose(preds['probability'], np.exp(logp).max(-1), rtol=1e-5)
  assert not objective.per_step and objective.prediction_time_keys == ()


def test_step_targets_against_numpy():
  outputs = RNG.normal(size=(2, 3, 2)).astype(np.float32)
  targets = RNG.normal(size=(2, 3, 2)).astype(np.float32)
  batch = {'targets': jnp.asarray(targets), 'lengths': LENGTHS}
  err = (outputs - targets)[[0, 0, 0, 1], [0, 1, 2, 0]].astype(np.float64)  # real steps
  objective = StepTargets()
  total, weight = _pair(objective.loss(jnp.asarray(outputs), batch))
  np.testing.assert_allclose((total, weight), ((err**2).sum(), 8.0), rtol=1e-5)
  total, weight = _pair(objective.eval_sums(jnp.asarray(outputs), batch)['mae'])
  np.testing.assert_allclose((total, weight), (np.abs(err).sum(), 8.0), rtol=1e-5)
  assert objective.predictions(outputs, batch)['predictions'] is outputs
  assert objective.label_key == 'targets' and objective.metric_modes['mae'] == 'min'
  np.testing.assert_allclose(objective.combine(jnp.ones((3, 2))), [1.0, 1.0])


def test_objectives_check_their_labels():
  lengths = np.array([2, 1], np.int32)
  per_step = {'lengths': lengths, 'labels': np.array([[0, 1], [1, 7]], np.int32)}
  StepLabels().check(per_step, 'x', {'num_classes': 2})  # 7 is past the length
  with pytest.raises(DataFileError, match=r'x: label 2 at \[0, 1\] is outside \[0, 2\)'):
    StepLabels().check({**per_step, 'labels': per_step['labels'] + 1}, 'x', {'num_classes': 2})
  with pytest.raises(DataFileError, match='one per step: use data.task=tagging'):
    SequenceLabels().check(per_step, 'x', {})
  with pytest.raises(DataFileError, match='one per sequence: use data.task=classification'):
    StepLabels().check({'lengths': lengths, 'labels': lengths}, 'x', {})
  with pytest.raises(DataFileError, match='example 1 is empty'):
    SequenceLabels().check({'lengths': np.array([1, 0])}, 'x', {})
  with pytest.raises(DataFileError, match='targets have 3 outputs per step; the model has 2'):
    StepTargets().check({'targets': np.zeros((1, 2, 3))}, 'x', {'output_size': 2})


def _ctc_nll(logits, labels, blank):
  """-log of the summed probability of every path that collapses to `labels`."""
  logp = _log_softmax(logits.astype(np.float64))
  total = 0.0
  for path in itertools.product(range(logits.shape[-1]), repeat=len(logits)):
    merged = [c for i, c in enumerate(path) if c != blank and (i == 0 or path[i - 1] != c)]
    if merged == list(labels):
      total += np.exp(sum(logp[t, c] for t, c in enumerate(path)))
  return -np.log(total)


def test_ctc_labels_against_all_paths_and_the_host_decoders():
  logits = RNG.normal(size=(3, 4, 3)).astype(np.float32)  # classes 0, 1 and blank 2
  labels = np.array([[1, 1, -1], [0, -1, -1], [-1, -1, -1]], np.int32)
  lengths = np.array([4, 2, 0], np.int32)  # the third: a padding example
  batch = {'labels': jnp.asarray(labels), 'lengths': lengths}
  objective = CTCLabels(max_tokens=3, beam_width=2)
  nll = _ctc_nll(logits[0], [1, 1], 2) + _ctc_nll(logits[1, :2], [0], 2)
  np.testing.assert_allclose(
    _pair(objective.loss(jnp.asarray(logits), batch)), (nll, 2.0), rtol=1e-5
  )

  greedy = ctc.greedy_decode(logits, lengths)
  refs = [[1, 1], [0], []]
  errors = sum(ctc.levenshtein(t.tolist(), r) for (t, _), r in zip(greedy, refs, strict=True))
  sums = objective.eval_sums(jnp.asarray(logits), batch)
  assert set(sums) == set(objective.metrics) == {'loss', 'der'}
  assert _pair(sums['der']) == (errors, 3.0)
  assert objective.metric_modes == {'loss': 'min', 'der': 'min'} and not objective.per_step

  preds = objective.predictions(jnp.asarray(logits), batch)
  for i, (tokens, spans) in enumerate(greedy):
    k = len(tokens)
    assert int(preds['num_digits'][i]) == k
    assert np.asarray(preds['digits'][i]).tolist() == tokens.tolist() + [-1] * (3 - k)
    # The default step_timing (1, 1, 1): times in steps, the first and one past the last.
    np.testing.assert_allclose(preds['start_s'][i, :k], [s for s, _ in spans])
    np.testing.assert_allclose(preds['end_s'][i, :k], [e for _, e in spans])

  beams = [
    tuple(ctc.prefix_beam_search(x[:n], 2)[0][0]) for x, n in zip(logits, lengths, strict=True)
  ]
  assert objective.host_metric_modes == {'beam_der': 'min'}
  host = objective.host_metrics({'labels': labels, 'lengths': lengths}, logits)
  assert host == {'beam_der': ctc.error_rate(beams, refs)}


def test_ctc_labels_take_another_blank():
  logits = RNG.normal(size=(1, 4, 3)).astype(np.float32)
  batch = {'labels': jnp.asarray([[2, 1]], jnp.int32), 'lengths': np.array([4], np.int32)}
  total, _ = _pair(CTCLabels(blank=0).loss(jnp.asarray(logits), batch))
  np.testing.assert_allclose(total, _ctc_nll(logits[0], [2, 1], 0), rtol=1e-5)


def test_ctc_labels_check_their_label_strings():
  lengths = np.array([3, 2], np.int32)
  good = {'lengths': lengths, 'labels': np.array([[0, 1, -1], [-1, -1, -1]], np.int32)}
  CTCLabels().check(good, 'x', {'num_classes': 3})
  with pytest.raises(DataFileError, match=r'x: CTC needs a label string per sequence'):
    CTCLabels().check({'lengths': lengths, 'labels': lengths}, 'x', {})
  with pytest.raises(DataFileError, match='x: sequence 1 has a label after its -1 padding'):
    CTCLabels().check({**good, 'labels': np.array([[0, 1, -1], [-1, 1, -1]])}, 'x', {})
  with pytest.raises(DataFileError, match=r'label 2 at \[0, 1\] is outside \[0, 3\) or the blank'):
    CTCLabels().check(
      {**good, 'labels': np.array([[0, 2, -1], [1, -1, -1]])}, 'x', {'num_classes': 3}
    )
  CTCLabels(blank=0).check(
    {**good, 'labels': np.array([[2, 1, -1], [1, 2, 2]])}, 'x', {'num_classes': 3}
  )


def test_a_task_takes_its_host_metrics_from_its_objective():
  @dataclasses.dataclass(frozen=True)
  class Transcriber(tasks.Task):
    name = 'transcriber'
    objective = CTCLabels(beam_width=1)

  task = Transcriber()
  assert task.host_metric_modes == {'beam_der': 'min'}
  logits = np.zeros((1, 2, 3), np.float32)
  logits[0, :, 1] = 5.0  # both steps say 1: one label
  dataset = {'labels': np.array([[1, 1]], np.int32), 'lengths': np.array([2], np.int32)}
  assert task.host_metrics(dataset, logits) == {'beam_der': 0.5}
  assert tasks.TaggingTask().host_metric_modes == {} and tasks.Task().host_metric_modes == {}
  assert tasks.TaggingTask().host_metrics(dataset, logits) == {}


def test_shipped_tasks_compose_their_objectives():
  from bilstm_jax.tasks import speech, speech_joined, text_classification, text_tagging

  assert isinstance(tasks.TaggingTask.objective, StepLabels)
  assert isinstance(speech_joined.DigitFramesTask.objective, StepLabels)
  assert isinstance(text_tagging.TextTaggingTask().objective, StepLabels)
  assert isinstance(text_tagging.TextTaggingTask(crf=True).objective, text_tagging.CRFTags)
  assert isinstance(tasks.ClassificationTask.objective, SequenceLabels)
  assert isinstance(speech.SpokenDigitTask.objective, SequenceLabels)
  assert isinstance(text_classification.TextClassificationTask.objective, SequenceLabels)
  assert isinstance(tasks.RegressionTask.objective, StepTargets)
  # fsdd_ctc's objective is made of its settings: the beam, the digits kept, the timing.
  ctc_task = speech_joined.DigitCTCTask(features=speech.feature_settings({}), beam_width=3)
  assert ctc_task.objective == CTCLabels(16, 3, ctc_task.step_timing, blank=speech.BLANK)
  assert ctc_task.host_metric_modes == {'beam_der': 'min'}
  assert ctc_task.metrics == ('loss', 'der') and not ctc_task.per_step
  # No diamonds: a source and an objective, not a source and another concrete task.
  for cls in (speech.SpokenDigitTask, speech_joined.DigitFramesTask, speech_joined.DigitCTCTask):
    assert not issubclass(cls, (tasks.TaggingTask, tasks.ClassificationTask))


# ------------------------------------------------- a source of its own + StepLabels


@dataclasses.dataclass(frozen=True)
class SignTagger(tasks.Task):
  """Generated float features; each step's label: whether its first feature is positive."""

  name = 'sign_tagger'
  objective = StepLabels()

  num: int = 32

  @classmethod
  def from_config(cls, config):
    return dataclasses.replace(super().from_config(config), num=config.data.num_train)

  def read(self, source, labelled=True):
    seed = {'train': 1, 'dev': 2, 'test': 3}[source]
    rng = np.random.default_rng(seed)
    inputs = rng.normal(size=(self.num, 5, 2)).astype(np.float32)
    lengths = rng.integers(1, 6, self.num).astype(np.int32)
    dataset = {'inputs': inputs, 'lengths': lengths}
    if labelled:
      dataset['labels'] = (inputs[..., 0] > 0).astype(np.int32)
    self.check(dataset, source)
    return dataset

  def fit(self, source='train'):
    return dataclasses.replace(self, sizes={'input_size': 2, 'num_classes': 2})

  def make_model(self):
    return BiLSTMTagger.from_config(self.model, num_classes=2)


def test_a_source_of_your_own_with_step_labels_trains_and_predicts(tmp_path):
  config = tiny_config(**{'data.task': f'{__name__}:SignTagger', 'train.epochs': 4})
  summary = app.train_and_evaluate(config, str(tmp_path))
  assert summary['task'] == 'sign_tagger'
  assert {'final_dev_loss', 'final_dev_accuracy'} <= set(summary)
  run = bilstm_jax.load(str(tmp_path))
  dev = run.task.read('dev')
  labels = run.predict_arrays(dev)['labels']
  steps = np.arange(labels.shape[1]) < dev['lengths'][:, None]
  assert ((labels >= 0) == steps).all()  # a label at each real step, -1 past the length
  np.testing.assert_allclose(run.evaluate('dev')['accuracy'], summary['final_dev_accuracy'])
