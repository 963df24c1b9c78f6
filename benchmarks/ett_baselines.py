"""The last-value and linear baselines on ETT, through the forecast task's own code.

The same windows, scaler and metrics as `train.py --config=ett --mode=evaluate`: every
window (stride 1) of the split, MSE and MAE on the standardised scale. Nothing is trained
by gradient descent; the linear baseline is fitted in closed form on the training rows
(ridge `data.baseline_ridge`, one map per channel), so these figures need no tuning.

  python -m benchmarks.ett_baselines --split=test --out=benchmarks/results/ett_baselines.json
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

from bilstm_jax.tasks import forecast
from configs import ett

FILES = {
  'ETTh1': ('../shared/data/ett/ETTh1.csv', 'h'),
  'ETTm1': ('../shared/data/ett/ETTm1.csv', 'm'),
}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--split', default='dev', help="'dev' (validation) or 'test'")
  parser.add_argument('--files', default='ETTh1,ETTm1')
  parser.add_argument('--input_lens', default='96,336')
  parser.add_argument('--horizons', default='96,192,336,720')
  parser.add_argument('--features', default='M')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  rows = []
  for name in args.files.split(','):
    path, freq = FILES[name]
    for input_len in map(int, args.input_lens.split(',')):
      for horizon in map(int, args.horizons.split(',')):
        cfg = ett.get_config()
        cfg.data.path, cfg.data.ett_freq, cfg.data.features = path, freq, args.features
        cfg.data.input_len, cfg.data.horizon = input_len, horizon
        start = time.perf_counter()
        task = forecast.ForecastTask.from_config(cfg)
        task = task.fit('train')
        data = task.read(args.split)
        row = {'file': name, 'features': args.features, 'input_len': input_len}
        row.update(horizon=horizon, split=args.split, windows=len(data['lengths']))
        for base in forecast.BASELINES:
          err = data[base].astype(np.float64) - data['targets']
          row[f'{base}_mse'] = float(np.mean(err**2))
          row[f'{base}_mae'] = float(np.mean(np.abs(err)))
        row['seconds'] = round(time.perf_counter() - start, 1)
        rows.append(row)
        print(
          f'{name} {args.features} L={input_len:<3} H={horizon:<3} {args.split} '
          f'n={row["windows"]:<5}  last {row["last_mse"]:.3f}/{row["last_mae"]:.3f}  '
          f'linear {row["linear_mse"]:.3f}/{row["linear_mae"]:.3f}  ({row["seconds"]} s)',
          flush=True,
        )
  if args.out:
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump(rows, f, indent=1)


if __name__ == '__main__':
  main()
