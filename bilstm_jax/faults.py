"""The one test-only fault hook: SIGKILL this process when it enters a phase of a run.

  BILSTM_JAX_FAULT=save:3        killed on entering its 3rd checkpoint save
  BILSTM_JAX_FAULT=commit:1      killed inside its 1st save, before the save is committed
  BILSTM_JAX_FAULT=step:5:0.02   killed 0.02 s after entering its 5th training call

Phases: 'step' (a compiled training call), 'eval' (the dev evaluation), 'save' (before a
checkpoint's files are written), 'commit' (inside the save, once its `meta` item is
written and before the checkpoint is committed: a partial checkpoint is left behind),
'export' and 'plot'.
Counts are per process, from 1. With the variable unset (always, outside
`benchmarks/faults.py` and the fault tests) `point` only reads the environment.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

ENV = 'BILSTM_JAX_FAULT'
_entered: dict[str, int] = {}


def point(phase: str) -> None:
  """Marks entering `phase`; SIGKILLs the process at the one `BILSTM_JAX_FAULT` names."""
  spec = os.environ.get(ENV)
  if not spec:
    return
  name, count, *delay = spec.split(':')
  if name != phase:
    return
  _entered[phase] = _entered.get(phase, 0) + 1
  if _entered[phase] != int(count):
    return
  delay_s = float(delay[0]) if delay else 0.0
  print(f'{ENV}: SIGKILL {delay_s} s into {phase} #{count}', file=sys.stderr, flush=True)
  kill = threading.Timer(delay_s, os.kill, (os.getpid(), signal.SIGKILL))
  kill.daemon = True
  kill.start()
  if delay_s <= 0:
    kill.join()
