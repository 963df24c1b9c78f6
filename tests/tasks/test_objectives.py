"""Objectives against hand-computed numpy on tiny batches, and a task composed of a source
of its own and `StepLabels` trained through the app."""

import dataclasses

import jax.numpy as jnp
import numpy as np
import pytest

import bilstm_jax
from bilstm_jax import app, tasks
from bilstm_jax.errors import DataFileError
from bilstm_jax.models import BiLSTMTagger
from bilstm_jax.tasks import SequenceLabels, StepLabels, StepTargets
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
  # No diamonds: a source and an objective, not a source and another concrete task.
  for cls in (speech.SpokenDigitTask, speech_joined.DigitFramesTask):
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
