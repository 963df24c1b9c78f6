"""Host-side decoding of trained speech runs: CTC transcripts with per-digit timings, digit
error rates of greedy and prefix-beam decoding, and named predictions for wav files.

  transcribe(trained, data, beam_width)    -> [{'transcript', 'digits': [...]}]
  decode_eval(trained, 'dev', beam_width)  -> digit and utterance error rates
  predict_wavs(trained, source, beam)      -> one record per wav file, beam-decoded

The device metrics of `speech_joined.DigitCTCTask` (its `CTCLabels` objective) are
greedy; its host metric `beam_der` (every evaluation) and `decode_eval` here share
`ctc.best_labellings` and `ctc.error_rate`.
"""

from __future__ import annotations

import jax
import numpy as np

from bilstm_jax.data import batching
from bilstm_jax.heads import ctc
from bilstm_jax.tasks.speech import BLANK
from bilstm_jax.tasks.speech_joined import DigitCTCTask
from bilstm_jax.tasks.speech_output import spans_to_rows


def logits_of(trained, dataset: dict) -> np.ndarray:
  """float32[n, time, classes]: a loaded run's per-frame logits for a dataset."""
  if trained.num_members is not None:
    raise ValueError('Host decoding takes a single model, not an ensemble.')
  model = trained.task.make_model()
  apply = jax.jit(lambda p, x, n: model.apply({'params': p}, x, n))
  n = len(dataset['lengths'])
  outs = [
    np.asarray(apply(trained.state.params, b['inputs'], b['lengths']))
    for b in batching.batches(dataset, trained.batch_size, shuffle=False, drop_remainder=False)
  ]
  return np.concatenate(outs)[:n]


def transcribe(trained, data, beam_width: int = 0) -> list[dict]:
  """Transcriptions with per-digit timing from a loaded `fsdd_ctc` run.

  Args:
    trained: `bilstm_jax.load(workdir)` of a DigitCTCTask run.
    data: a source (folder, .wav, .txt list, split) or {'inputs', 'lengths'} features.
    beam_width: 0 for greedy decoding; else prefix beam search with this many prefixes
      (timings from the forced alignment of the best labelling).

  Returns:
    per utterance {'transcript': '407', 'digits': [{'digit', 'start_s', 'end_s'}, ...]}.
  """
  if trained.task.name != DigitCTCTask.name:
    raise ValueError(f'transcribe takes an fsdd_ctc run, not {trained.task.name!r}.')
  dataset = trained.dataset(data, labelled=False)
  logits = logits_of(trained, dataset)
  if beam_width:
    decoded = ctc.beam_decode(logits, dataset['lengths'], beam_width, BLANK)
  else:
    decoded = ctc.greedy_decode(logits, dataset['lengths'], BLANK)
  return spans_to_rows(decoded, trained.task)


levenshtein = ctc.levenshtein  # the host reference for `ctc_objective.edit_distances`


def decode_eval(trained, source: str = 'dev', beam_width: int = 8) -> dict:
  """Digit error rates of greedy and prefix-beam decoding on a labelled source.

  Returns:
    {'der_greedy', 'der_beam', 'utterance_error_greedy', 'utterance_error_beam',
    'num_utterances', 'num_digits'}.
  """
  dataset = trained.dataset(source, labelled=True)
  logits = logits_of(trained, dataset)
  lengths = dataset['lengths']
  refs = [row[row >= 0].tolist() for row in dataset['labels']]
  greedy = ctc.greedy_decode(logits, lengths, BLANK)
  beam = ctc.beam_decode(logits, lengths, beam_width, BLANK)
  total = sum(len(r) for r in refs)
  out = {'num_utterances': len(refs), 'num_digits': total, 'beam_width': beam_width}
  for name, decoded in (('greedy', greedy), ('beam', beam)):
    hyps = [t.tolist() for t, _ in decoded]
    out[f'der_{name}'] = ctc.error_rate(hyps, refs)
    out[f'utterance_error_{name}'] = float(
      np.mean([h != r for h, r in zip(hyps, refs, strict=True)])
    )
  return out


def predict_wavs(trained, source: str, beam_width: int = 0) -> list[dict]:
  """A speech run's records of wav files (`trained.predict(source)`), or with
  `beam_width` > 0 a CTC run's transcripts by prefix beam search, each naming its file.

  Args:
    trained: `bilstm_jax.load(workdir)` of a speech run (beam search: 'fsdd_ctc').
    source: a folder of wavs, one .wav, or a .txt list of wav paths.
    beam_width: CTC only: 0 greedy (on device, as `--mode=predict`), else beam search.

  Returns:
    per file the task's record, e.g. {'file', 'digit', 'probability', ...} (classifier)
    or {'file', 'transcript', 'digits': [{'digit', 'start_s', 'end_s'}]} (CTC).
  """
  if not beam_width:
    return trained.predict(source)
  files = trained.task.example_files(source)
  rows = transcribe(trained, source, beam_width)
  if files is None:  # joined utterances of a split: no file each
    return rows
  return [{'file': f, **row} for f, row in zip(files, rows, strict=True)]
