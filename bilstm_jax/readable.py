"""Predictions a person reads, for tasks whose inputs have names: sentences with their
tags or labels, wav files with their digits and CTC timings.

`train.py --mode=predict` writes arrays (padded, in file order); this writes one JSON
line per input with its words or file name:

  python -m bilstm_jax.readable --workdir runs/pos_ud --input sentences.txt
  python -m bilstm_jax.readable --workdir runs/fsdd_ctc --input wavs/ --beam_width 8

From Python, one call loads a text run and tags (or classifies) tokenised sentences:

  bilstm_jax.predict_sentences('runs/pos_ud', [['The', 'cat', 'sat', '.']])
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import bilstm_jax.ensembles.trained  # noqa: F401 (registers how inference.load loads ensembles)
from bilstm_jax.tasks import speech, speech_decode, text
from bilstm_jax.training import inference


def rows(trained, source: str, beam_width: int = 0) -> list[dict]:
  """One JSON-able row per input of `source`, for a text or speech run."""
  task = trained.task
  if isinstance(task, text._TextTask):
    return _text_rows(trained, source)
  if isinstance(task, speech.SpeechData):
    return speech_decode.predict_wavs(trained, source, beam_width)
  raise ValueError(
    f'readable predictions take a text or speech run; {task.name!r} has `train.py --mode=predict`.'
  )


def predict_sentences(run, sentences: list[list[str]]) -> list[dict]:
  """A text run's predictions on tokenised sentences, with tag and label names.

  Args:
    run: a workdir path (its best checkpoint is loaded), or `bilstm_jax.load(workdir)`.
    sentences: lists of tokens; an empty list is allowed.

  Returns:
    One dict per sentence: tagging {'tokens', 'tags', 'confidence'}; classification
    {'label', 'probability'} (label None for an empty sentence).
  """
  trained = inference.load(run) if isinstance(run, str) else run
  task = trained.task
  if not isinstance(task, text._TextTask):
    raise ValueError(f'predict_sentences takes a text run, not {task.name!r}.')
  preds = trained.predict_encoded(task.encode(sentences))
  names = task.label_names()
  out = []
  for i, tokens in enumerate(sentences):
    if task.per_step:
      n = len(tokens)
      tags = [names[j] for j in preds['labels'][i, :n]]
      conf = [round(float(c), 6) for c in preds['confidence'][i, :n]]
      out.append({'tokens': tokens, 'tags': tags, 'confidence': conf})
    else:
      label = names[int(preds['label'][i])] if tokens else None
      out.append({'label': label, 'probability': round(float(preds['probability'][i]), 6)})
  return out


def _text_rows(trained, source: str) -> list[dict]:
  """`predict_sentences` on a file: raw `.txt` lines, or the task's own format."""
  task = trained.task
  sentences, _ = task.tokens(task.resolve(source), labelled=False)
  return predict_sentences(trained, sentences)


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--input', required=True, help='sentences, a CoNLL file, wavs, ...')
  parser.add_argument('--beam_width', type=int, default=0, help='CTC: 0 greedy, else beam')
  parser.add_argument('--checkpoint', default='best', choices=('best', 'latest'))
  parser.add_argument('--output', default='', help='a .jsonl path; default stdout')
  args = parser.parse_args(argv)
  out = rows(inference.load(args.workdir, args.checkpoint), args.input, args.beam_width)
  lines = [json.dumps(r, ensure_ascii=False) + '\n' for r in out]
  if not args.output:
    sys.stdout.writelines(lines)
    return
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  with open(args.output + '.tmp', 'w', encoding='utf-8') as f:
    f.writelines(lines)
  os.replace(args.output + '.tmp', args.output)


if __name__ == '__main__':
  main()
