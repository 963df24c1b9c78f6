"""A config file that returns a run's saved config: `saved_config.py:WORKDIR`.

`train.py --mode=evaluate/predict` without `--config` loads this with the workdir as its
argument, so the run's own config.json is the base and `--config.*` overrides apply.
"""

import json
import os

import ml_collections


def get_config(workdir: str) -> ml_collections.ConfigDict:
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(
      f'{path} does not exist: {workdir} holds no trained run (pass --config, or train first).'
    )
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))
