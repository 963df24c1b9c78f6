"""Deprecated: readable predictions are what `--mode=predict` and `Trained.predict` give.

Every task now writes its predictions in its own terms (`Task.records`): tag names,
labels with probabilities, transcripts with digit times, forecast rows. Use

  python train.py --workdir runs/pos_ud --mode=predict --input=sentences.txt --output=tags.jsonl
  bilstm_jax.load('runs/pos_ud').predict([['The', 'cat', 'sat', '.']])

This module's command and `predict_sentences` still work, with a DeprecationWarning,
and give those same records. `--beam_width` (CTC runs) is
`bilstm_jax.tasks.speech_decode.predict_wavs(trained, source, beam_width)`.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings

import bilstm_jax.ensembles.trained  # noqa: F401 (registers how inference.load loads ensembles)
from bilstm_jax.data import files
from bilstm_jax.tasks import speech_decode
from bilstm_jax.training import inference


def _deprecated(old: str, new: str) -> None:
  warnings.warn(f'{old} is deprecated; use {new}.', DeprecationWarning, stacklevel=3)


def rows(trained, source: str, beam_width: int = 0) -> list[dict]:
  """Deprecated: `trained.predict(source)` (CTC beam search: `speech_decode.predict_wavs`)."""
  _deprecated('bilstm_jax.readable.rows', 'bilstm_jax.load(workdir).predict(source)')
  if beam_width:
    return speech_decode.predict_wavs(trained, source, beam_width)
  return trained.predict(source)


def predict_sentences(run, sentences: list) -> list[dict]:
  """Deprecated: `bilstm_jax.load(workdir).predict(sentences)`, the same records.

  Args:
    run: a workdir path (its best checkpoint is loaded), or `bilstm_jax.load(workdir)`.
    sentences: token lists (or strings); an empty one is allowed.

  Returns:
    The task's records: tagging {'tokens', 'tags', 'confidence'}; classification
    {'text', 'label', 'probability', 'probabilities'} (label None for an empty sentence).
  """
  _deprecated('bilstm_jax.predict_sentences', 'bilstm_jax.load(workdir).predict(sentences)')
  trained = inference.load(run) if isinstance(run, str) else run
  return trained.predict(list(sentences))


def main(argv: list[str] | None = None) -> None:
  """Deprecated command: `train.py --mode=predict --input=... --output=X.jsonl`."""
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--input', required=True, help='sentences, a CoNLL file, wavs, ...')
  parser.add_argument('--beam_width', type=int, default=0, help='CTC: 0 greedy, else beam')
  parser.add_argument('--checkpoint', default='best', choices=('best', 'latest'))
  parser.add_argument('--output', default='', help='a .jsonl path; default stdout')
  args = parser.parse_args(argv)
  _deprecated('python -m bilstm_jax.readable', 'train.py --mode=predict --output=X.jsonl')
  trained = inference.load(args.workdir, args.checkpoint)
  if args.beam_width:
    out = speech_decode.predict_wavs(trained, args.input, args.beam_width)
  else:
    out = trained.predict(args.input)
  if args.output:
    files.write_jsonl(args.output, out)
  else:
    sys.stdout.writelines(json.dumps(r, ensure_ascii=False) + '\n' for r in out)


if __name__ == '__main__':
  main()
