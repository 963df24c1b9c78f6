"""Speech predictions in the tasks' own terms (`Task.records`): one JSON-able dict per
utterance, naming its wav file where the source has one file per utterance.

  fsdd          {'file', 'digit', 'probability', 'probabilities': {'0': p, ...}}
  fsdd_ctc      {'file', 'transcript': '407', 'digits': [{'digit', 'start_s', 'end_s'}]}
  fsdd_frames   as fsdd_ctc (the digits are runs of frames), plus 'frames': a character
                per model step, the digit or '_' for silence

Times are in seconds from the start of the file, rounded to 0.1 ms: a digit's first
step's first sample to its last step's last (`SpeechData.step_timing`).
"""

from __future__ import annotations

import numpy as np

SILENCE_CHAR = '_'  # a silent step in 'frames'


def spans_to_rows(decoded, task) -> list[dict]:
  """Decoded (tokens, frame spans) pairs as JSON-able rows with times in seconds.

  Args:
    decoded: per utterance (tokens int[k], spans [(start, end)] * k): each token's first
      step and one past its last.
    task: a speech task (its `step_timing`).

  Returns:
    per utterance {'transcript': '407', 'digits': [{'digit', 'start_s', 'end_s'}, ...]}.
  """
  hop, win, rate = task.step_timing
  rows = []
  for tokens, spans in decoded:
    rows.append(
      {
        'transcript': ''.join(str(int(t)) for t in tokens),
        'digits': [
          {
            'digit': int(t),
            'start_s': round(float(s * hop / rate), 4),
            'end_s': round(float(((e - 1) * hop + win) / rate), 4),
          }
          for t, (s, e) in zip(tokens, spans, strict=True)
        ],
      }
    )
  return rows


def _with_files(task, source, rows: list[dict]) -> list[dict]:
  """`rows` with each utterance's wav file first, where the source has one per row."""
  files = task.example_files(source)
  if files is None:
    return rows
  return [{'file': f, **row} for f, row in zip(files, rows, strict=True)]


def digit_records(task, dataset: dict, predictions: dict, source) -> list[dict]:
  """One spoken digit per file: the digit, its probability and every digit's."""
  rows = []
  for d, p, probs in zip(
    predictions['label'], predictions['probability'], predictions['probabilities'], strict=True
  ):
    rows.append(
      {
        'digit': int(d),
        'probability': round(float(p), 6),
        'probabilities': {str(k): round(float(q), 6) for k, q in enumerate(probs)},
      }
    )
  return _with_files(task, source, rows)


def transcript_records(task, dataset: dict, predictions: dict, source) -> list[dict]:
  """CTC transcripts (greedy, as `predictions` decodes) with each digit's times."""
  rows = []
  for i, count in enumerate(predictions['num_digits']):
    k = min(int(count), predictions['digits'].shape[1])
    rows.append(
      {
        'transcript': ''.join(str(int(d)) for d in predictions['digits'][i, :k]),
        'digits': [
          {'digit': int(d), 'start_s': round(float(s), 4), 'end_s': round(float(e), 4)}
          for d, s, e in zip(
            predictions['digits'][i, :k],
            predictions['start_s'][i, :k],
            predictions['end_s'][i, :k],
            strict=True,
          )
        ],
      }
    )
  return _with_files(task, source, rows)


def frame_records(task, dataset: dict, predictions: dict, source) -> list[dict]:
  """Framewise labels: the runs of digit frames as a transcript with times, and the
  frames themselves."""
  silence = task.sizes['num_classes'] - 1
  decoded, frames = [], []
  for labels, n in zip(predictions['labels'], dataset['lengths'], strict=True):
    labels = np.asarray(labels[: int(n)])
    starts = np.flatnonzero(np.diff(labels, prepend=-1) != 0)
    ends = np.append(starts[1:], len(labels))
    runs = [(int(labels[s]), (int(s), int(e))) for s, e in zip(starts, ends, strict=True)]
    runs = [r for r in runs if r[0] != silence]
    decoded.append(([t for t, _ in runs], [span for _, span in runs]))
    frames.append(''.join(SILENCE_CHAR if t == silence else str(t) for t in labels))
  rows = spans_to_rows(decoded, task)
  rows = [{**row, 'frames': f} for row, f in zip(rows, frames, strict=True)]
  return _with_files(task, source, rows)
