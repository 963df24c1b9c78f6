"""Errors whose message fully explains a problem with a run's inputs (no traceback needed).

`train.py` prints these as one line and exits with status 1; anything else is a bug and
keeps its traceback.
"""


class RunError(Exception):
  """A bad data file, an incompatible workdir or checkpoint, or a diverged run."""


class ConfigError(RunError):
  """A config value or command-line use that cannot work; the message names the key."""


class DataFileError(RunError):
  """A data file is missing, unreadable or malformed; the message names it (and the line)."""


class NotFittedError(RunError):
  """A task asked to read or encode data before `Task.fit` (or `with_spec`) fitted it."""


class CheckpointError(RunError):
  """A workdir's checkpoints or config do not fit the current config."""


class NonFiniteLossError(RunError):
  """Training produced a NaN or inf loss; the last good checkpoint is kept."""
