"""CTC prefix beam search on the host: the vectorised search against the reference, and
the `beam_der` dev metric that ranks an `fsdd_ctc` run's checkpoints."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import bilstm_jax
from bilstm_jax.heads import ctc
from bilstm_jax.tasks import speech_decode
from tests.tasks.test_speech import write_tones
from tests.utils import ROOT


@pytest.mark.parametrize('beam_width', [1, 2, 3, 8])
def test_batched_search_finds_the_reference_searchs_best_labelling(beam_width):
  rng = np.random.default_rng(beam_width)
  for _ in range(8):
    n, time, classes = 5, int(rng.integers(1, 12)), int(rng.integers(2, 6))
    logits = rng.normal(size=(n, time, classes)) * rng.uniform(0.5, 4.0)
    logits[..., -1] += rng.uniform(0.0, 2.0)  # blank-heavy, so repeats and merges occur
    lengths = rng.integers(0, time + 1, n)
    got = ctc.best_labellings(logits, lengths, beam_width)
    want = [
      tuple(ctc.prefix_beam_search(x[:m], beam_width)[0][0])
      for x, m in zip(logits, lengths, strict=True)
    ]
    assert got == want


def test_error_rate_is_edit_distance_over_reference_digits():
  assert ctc.error_rate([(1, 2), (), (3, 3, 4)], [[1, 2], [5], [3, 4]]) == 2 / 5


@pytest.mark.slow
@pytest.mark.subprocess
def test_dev_beam_der_is_logged_and_ranks_the_kept_checkpoint(tmp_path):
  (tmp_path / 'wavs').mkdir()
  folder = write_tones(tmp_path / 'wavs')
  workdir = str(tmp_path / 'run')
  cmd = [
    sys.executable,
    'train.py',
    f'--workdir={workdir}',
    '--config=configs/fsdd_ctc.py:tiny',
    f'--config.data.folder={folder}',
    '--config.train.metric=dev_beam_der',
    '--config.train.log_every_epochs=2',
  ]
  env = {**os.environ, 'PYTHONPATH': ROOT}
  done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-2000:]
  lines = pathlib.Path(workdir, 'metrics.jsonl').read_text().splitlines()
  evals = {r['step']: r for r in map(json.loads, lines) if r['event'] == 'eval'}
  assert len(evals) == 5 and all('dev_beam_der' in r for r in evals.values())
  trained = bilstm_jax.load(workdir, 'best')
  step = int(os.path.basename(trained.checkpoint))
  assert evals[step]['dev_beam_der'] == min(r['dev_beam_der'] for r in evals.values())
  # The metric is decode_eval's beam digit error rate on the same outputs.
  dataset = trained.dataset('dev', labelled=True)
  logits = speech_decode.logits_of(trained, dataset)
  ours = trained.task.host_metrics(dataset, logits)['beam_der']
  result = speech_decode.decode_eval(trained, 'dev', beam_width=trained.task.beam_width)
  assert ours == result['der_beam']
  np.testing.assert_allclose(ours, evals[step]['dev_beam_der'])
