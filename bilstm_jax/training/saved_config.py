"""A config file that returns a run's saved config: `saved_config.py:WORKDIR`.

`train.py --mode=evaluate/predict` without `--config` loads this with the workdir as its
argument, so the run's own config.json is the base and `--config.*` overrides apply.
"""

import json
import os

import ml_collections


def get_config(workdir: str) -> ml_collections.ConfigDict:
  """The run's config.json as a ConfigDict.

  Raises:
    FileNotFoundError: the workdir holds no config.json.
    ValueError: config.json is not a JSON object (the message names the file).
  """
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(
      f'{path} does not exist: {workdir} holds no trained run (pass --config, or train first).'
    )
  try:
    with open(path, 'rb') as f:
      saved = json.loads(f.read().decode('utf-8'))
  except UnicodeDecodeError as e:
    raise ValueError(f'{path}: not UTF-8 ({e.reason} at byte {e.start}).') from None
  except json.JSONDecodeError as e:
    raise ValueError(f'{path}:{e.lineno}: not valid JSON ({e.msg}).') from None
  if not isinstance(saved, dict):
    raise ValueError(f'{path}: holds a JSON {type(saved).__name__}, not a config object.')
  return ml_collections.ConfigDict(saved)
