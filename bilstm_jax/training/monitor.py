"""What a run reports while it trains: metrics.jsonl, TensorBoard events, a progress bar.

All three are fed host-side values only, at log intervals; nothing here touches device
arrays, so the training loop decides when to fetch them (once per interval).
"""

from __future__ import annotations

import json
import os

import tqdm
from tensorboardX import SummaryWriter


def read_events(path: str) -> list[dict]:
  """The JSON objects of a metrics.jsonl file; a torn last line (a killed run) is skipped."""
  if not os.path.exists(path):
    return []
  events = []
  with open(path) as f:
    for line in f:
      try:
        events.append(json.loads(line))
      except json.JSONDecodeError:
        continue
  return events


class Monitor:
  """metrics.jsonl, TensorBoard and the progress bar of one run.

  Args:
    workdir: the run directory.
    total_steps: optimiser steps the run will have made when it ends.
    start_step: the step the run starts (or resumes) at. On resume, events logged after
      it (by a run killed before its next checkpoint) are dropped from metrics.jsonl and
      TensorBoard, so each step is reported once.
  """

  def __init__(self, workdir: str, total_steps: int, start_step: int = 0):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    if start_step:
      self._truncate_after(start_step)
    self.writer = SummaryWriter(
      os.path.join(workdir, 'tensorboard'), purge_step=start_step or None, flush_secs=10
    )
    # disable=None: quiet when stderr is not a terminal (logs, CI, subprocesses).
    self.bar = tqdm.tqdm(
      total=total_steps, initial=start_step, unit='step', disable=None, dynamic_ncols=True
    )

  def _truncate_after(self, step: int) -> None:
    kept = [e for e in read_events(self.path) if e.get('step', 0) <= step]
    tmp = self.path + '.tmp'
    with open(tmp, 'w') as f:
      f.writelines(json.dumps(e) + '\n' for e in kept)
    os.replace(tmp, self.path)

  def event(self, event: str, **values) -> None:
    """Appends one JSON object to metrics.jsonl."""
    with open(self.path, 'a') as f:
      f.write(json.dumps({'event': event, **values}) + '\n')

  def hparams(self, config_dict: dict) -> None:
    """Writes the hyperparameters once (call on a fresh run only)."""
    self.event('hparams', step=0, config=config_dict)
    text = json.dumps(config_dict, indent=2, sort_keys=True)
    self.writer.add_text('hparams', '```\n' + text + '\n```', 0)

  def scalars(self, step: int, values: dict) -> None:
    """Numbers to TensorBoard (as `prefix/name` for 'train_loss' -> 'train/loss')."""
    for name, value in values.items():
      if isinstance(value, int | float) and name not in ('step', 'epoch'):
        tag = name.replace('_', '/', 1) if '_' in name else name
        self.writer.add_scalar(tag, value, step)
    self.writer.flush()

  def advance(self, steps: int, **postfix) -> None:
    """Moves the progress bar on by `steps`, showing `postfix` (e.g. the loss) beside it."""
    self.bar.update(steps)
    if postfix:
      self.bar.set_postfix(postfix, refresh=False)

  def print(self, message: str) -> None:
    """Prints to stdout without breaking the progress bar."""
    self.bar.write(message)

  def close(self) -> None:
    """Closes the progress bar and the TensorBoard writer."""
    self.bar.close()
    self.writer.close()
