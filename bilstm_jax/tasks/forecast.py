"""Forecasting: a CSV time series, windows of `input_len` rows in, `horizon` rows out.

The benchmark protocol of the long-horizon forecasting papers (Informer, Autoformer,
DLinear, PatchTST; see `bilstm_jax.data.timeseries`):

  - splits are row ranges (the ETT 12/4/4-month borders, explicit rows, or fractions);
    val and test windows read their inputs back into the previous split, never their
    targets;
  - every column is standardised with the mean and std of the training rows only; the
    scaler is part of the task's `spec()` (task.json), so evaluation and prediction undo it;
  - MSE and MAE are reported on that standardised scale, over every window (stride 1) of
    the range, every step and every target channel. The papers' test loaders drop the last
    short batch; here every window counts.

Every evaluated dataset also carries the last-value and the DLinear-style linear baseline
forecasts of the same windows (`bilstm_jax.data.ts_baselines`), so the metrics
`last_loss`, `last_mae`, `linear_loss` and `linear_mae` sit beside the model's in the
training log and in `--mode=evaluate`'s JSON line.

Dataset dicts: `inputs` float32[n, input_len, in_channels], `targets` float32[n, horizon,
out_channels], `lengths` int32[n] (all input_len), `last` and `linear` float32[n, horizon,
out_channels] (the baselines); a prediction dataset also has `time` [n, horizon], the time
stamps of the forecast rows (Unix seconds for dates, else the time column's numbers).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import ClassVar

import jax.numpy as jnp
import numpy as np

from bilstm_jax.data import csv_series, ts_baselines
from bilstm_jax.data import timeseries as ts
from bilstm_jax.errors import ConfigError, DataFileError
from bilstm_jax.models.forecast import ForecastConfig, WindowForecaster
from bilstm_jax.tasks import base, forecast_output, losses

SPLIT_NAMES = {'train': 'train', 'dev': 'val', 'val': 'val', 'test': 'test'}
FEATURES = ('M', 'S', 'MS')
SPLIT_MODES = ('ett', 'rows', 'fractions')
BASELINES = ('last', 'linear')


def _names(text: str) -> tuple[str, ...] | None:
  """'a,b' -> ('a', 'b'); '' -> None (every column)."""
  names = tuple(n.strip() for n in text.split(',') if n.strip())
  return names or None


@dataclasses.dataclass(frozen=True)
class ForecastTask(base.Task):
  """Direct multi-horizon forecasting of CSV columns with a `Forecaster`.

  Attributes:
    data: plain values from the config's `data` block: 'path', 'time_column',
      'input_columns' and 'target_columns' (tuples, or None for the defaults of
      `timeseries.read_csv`), 'input_len', 'horizon', 'stride' (of the training
      windows), 'split' ('ett', 'rows' or 'fractions'), 'ett_freq' ('h' or 'm'),
      'split_rows' (4 boundaries), 'split_fractions' ((train, test)),
      'baseline_ridge', 'baseline_individual', 'baseline_kernel'.
    model: the model's typed options (`bilstm_jax.models.ForecastConfig`).
    sizes: after `fit`: 'input_size', 'output_size', 'columns', 'input_columns',
      'target_columns' and 'scaler' ({'columns', 'mean', 'std'} of the training rows).
  """

  name: ClassVar[str] = 'forecast'
  metrics: ClassVar[tuple[str, ...]] = ('loss', 'mae') + tuple(
    f'{b}_{m}' for b in BASELINES for m in ('loss', 'mae')
  )
  metric_modes: ClassVar[dict] = {m: 'min' for m in metrics}
  prediction_time_keys: ClassVar[tuple[str, ...]] = ()  # horizon steps, not input steps
  records = forecast_output.records  # {'forecast': [{'time', column: value, ...}, ...]}
  per_step: ClassVar[bool] = False  # targets have `horizon` steps, never cut by buckets
  label_key: ClassVar[str] = 'targets'

  data: dict = dataclasses.field(default_factory=dict)

  @classmethod
  def from_config(cls, config) -> ForecastTask:
    d, m = config.data, config.model
    if d.features not in FEATURES:
      raise ConfigError(f'config.data.features={d.features!r}: must be one of {FEATURES}.')
    if d.split not in SPLIT_MODES:
      raise ConfigError(f'config.data.split={d.split!r}: must be one of {SPLIT_MODES}.')
    segment = int(m.get('segment_len', 0))
    if segment < 0 or (segment and int(d.input_len) % segment):
      raise ConfigError(
        f'config.model.segment_len={segment}: must be 0 or divide '
        f'config.data.input_len={d.input_len}.'
      )
    inputs, targets = _names(d.input_columns), _names(d.target_columns)
    if d.features == 'S':
      inputs = targets = (d.target,)
    elif d.features == 'MS':
      targets = (d.target,)
    data = {
      'path': d.path,
      'time_column': d.time_column or None,
      'input_columns': inputs,
      'target_columns': targets,
      'input_len': int(d.input_len),
      'horizon': int(d.horizon),
      'stride': int(d.stride),
      'split': d.split,
      'ett_freq': d.ett_freq,
      'split_rows': tuple(int(b) for b in str(d.split_rows).split(',') if b.strip()),
      'split_fractions': (float(d.train_fraction), float(d.test_fraction)),
      'baseline_ridge': float(d.baseline_ridge),
      'baseline_individual': bool(d.baseline_individual),
      'baseline_kernel': int(d.baseline_kernel),
    }
    return cls(model=ForecastConfig.from_config(m), data=data)

  # ------------------------------------------------------------------------- data

  def series(self, path: str | None = None) -> csv_series.Series:
    """The CSV (default: the configured one) with this task's columns."""
    d = self.data
    return _read(path or d['path'], d['time_column'], d['input_columns'], d['target_columns'])

  def borders(self, num_rows: int) -> dict[str, ts.Rows]:
    """{'train', 'val', 'test'}: the rows each split's windows may read."""
    d, lag = self.data, self.data['input_len']
    if d['split'] == 'ett':
      borders = ts.ett_borders(d['ett_freq'], lag)
    elif d['split'] == 'rows':
      borders = ts.split_by_rows(d['split_rows'], lag)
    else:
      borders = ts.split_by_fractions(num_rows, lag, *d['split_fractions'])
    for name, (_lo, hi) in borders.items():
      if hi > num_rows:
        raise DataFileError(
          f'{d["path"]}: the {name} split needs rows up to {hi}; the file has {num_rows}.'
        )
    return borders

  def scaler(self) -> ts.Scaler:
    s = self.sizes['scaler']
    return ts.Scaler(tuple(s['columns']), np.asarray(s['mean']), np.asarray(s['std']))

  def _checked_series(self, path: str | None = None) -> csv_series.Series:
    series = self.series(path)
    if not set(series.target_index) <= set(series.input_index):
      raise ConfigError(
        f'target columns {series.target_columns} must also be input columns '
        f'{series.input_columns}: the model and the baselines forecast channels they read.'
      )
    if self.sizes and tuple(series.columns) != tuple(self.sizes['columns']):
      raise DataFileError(
        f'{series.path}: columns {series.columns}; the model was trained on '
        f'{tuple(self.sizes["columns"])}.'
      )
    return series

  def read(self, source: str, labelled: bool = True) -> dict:
    """A split or a CSV file as windows (see the module docstring).

    Args:
      source: 'train' (windows every `stride` rows), 'dev' or 'val', 'test' (every
        window), or a CSV path with the training file's columns. For prediction
        (labelled=False) a CSV gives one window, its last `input_len` rows, whose
        forecast is the rows after the end of the file.
      labelled: with targets and baselines (training, evaluation).
    """
    if not self.sizes:
      raise self.not_fitted('reading windows (they are scaled with the training rows)')
    d = self.data
    split = SPLIT_NAMES.get(source)
    path = d['path'] if split is not None else source
    series = self._checked_series(path)
    if not labelled and split is None:
      return self._future(series)
    values = self.scaler().transform(series.values)
    rows = self.borders(len(series))[split] if split is not None else (0, len(series))
    stride = d['stride'] if split == 'train' else 1
    windows = ts.make_windows(rows, d['input_len'], d['horizon'], stride)
    if not len(windows):
      raise DataFileError(
        f'{path}: rows {rows} hold no window of {d["input_len"]} + {d["horizon"]} rows.'
      )
    inputs, targets = ts.gather(values, windows, series.input_index, series.target_index)
    dataset = {'inputs': inputs, 'lengths': np.full(len(inputs), d['input_len'], np.int32)}
    if labelled:
      dataset['targets'] = targets
      dataset.update(self.baselines(inputs, series))
    return dataset

  def _future(self, series: csv_series.Series) -> dict:
    """The last window of a table and the time stamps of the `horizon` rows after it."""
    d = self.data
    if len(series) < d['input_len']:
      raise DataFileError(f'{series.path}: {len(series)} rows; the model reads {d["input_len"]}.')
    values = self.scaler().transform(series.values)
    inputs = values[-d['input_len'] :, series.input_index][None].astype(np.float32)
    dataset = {'inputs': inputs, 'lengths': np.full(1, d['input_len'], np.int32)}
    if series.time is not None:
      dataset['time'] = forecast_output.future_times(series.time, d['horizon'])[None]
    return dataset

  def fit(self, source: str = 'train') -> ForecastTask:
    """This task with sizes and a scaler fitted on the training rows alone (`source`:
    'train' for the configured CSV, or another CSV with the same columns)."""
    series = self._checked_series(None if source in SPLIT_NAMES else source)
    train = self.borders(len(series))['train']
    scaler = ts.Scaler.fit(series.values, train, series.columns)
    sizes = {
      'input_size': len(series.input_index),
      'output_size': len(series.target_index),
      'columns': list(series.columns),
      'input_columns': list(series.input_columns),
      'target_columns': list(series.target_columns),
      'scaler': {
        'columns': list(scaler.columns),
        'mean': scaler.mean.tolist(),
        'std': scaler.std.tolist(),
      },
    }
    return dataclasses.replace(self, sizes=sizes)

  def with_spec(self, spec: dict) -> ForecastTask:
    task = super().with_spec(spec)
    for key in ('input_len', 'horizon'):
      if spec.get(key) is not None and spec[key] != self.data[key]:
        raise DataFileError(
          f'The saved run has data.{key}={spec[key]}; the config says {self.data[key]}.'
        )
    return task

  def spec(self) -> dict:
    return {**super().spec(), 'input_len': self.data['input_len'], 'horizon': self.data['horizon']}

  def baselines(self, inputs: np.ndarray, series: csv_series.Series) -> dict:
    """The last-value and linear forecasts of windows, on the targets' channels.

    Args:
      inputs: float32[n, input_len, in_channels], scaled.
      series: the table they come from (for the column positions).

    Returns:
      {'last': float32[n, horizon, out], 'linear': float32[n, horizon, out]}.
    """
    d = self.data
    pos = [list(series.input_index).index(t) for t in series.target_index]
    last = ts_baselines.persistence(inputs[:, :, pos], d['horizon']).astype(np.float32)
    linear = _linear_baseline(self._train_key())
    return {'last': last, 'linear': linear.predict(inputs[:, :, pos])}

  def _train_key(self) -> tuple:
    """Everything the linear baseline's fit depends on, hashable (for the cache)."""
    d = self.data
    keys = ('path', 'time_column', 'input_columns', 'target_columns', 'input_len', 'horizon')
    keys += ('split', 'ett_freq', 'split_rows', 'split_fractions', 'baseline_ridge')
    keys += ('baseline_individual', 'baseline_kernel')
    return tuple((k, d[k]) for k in keys) + (('scaler', repr(self.sizes['scaler'])),)

  def example_batch(self, batch_size: int = 1, time: int = 1) -> dict:
    """Zeros of a batch's shapes; always `input_len` steps (the head's size depends on it)."""
    del time
    return super().example_batch(batch_size, self.data['input_len'])

  # ------------------------------------------------------------------------ model

  def target_positions(self) -> tuple[int, ...]:
    """Positions of the target columns among the input columns."""
    inputs = self.sizes['input_columns']
    return tuple(inputs.index(c) for c in self.sizes['target_columns'])

  def make_model(self) -> WindowForecaster:
    """A `WindowForecaster` from the typed model options and the fitted columns."""
    linear = None
    if self.model.linear_base:
      key = self._train_key()

      def linear():  # the fit runs only where parameters are initialised
        return _linear_baseline(key).weights.astype(np.float32)

    return WindowForecaster.from_config(
      self.model,
      horizon=self.data['horizon'],
      out_channels=self.sizes['output_size'],
      target_index=self.target_positions(),
      linear_init=linear,
      linear_kernel=self.data['baseline_kernel'],
    )

  def model_inputs(self, batch: dict) -> tuple:
    """(float32[batch, input_len, channels],): see `WindowForecaster`."""
    return (batch['inputs'],)

  def export_axes(self) -> dict:  # batch alone: the head's size depends on input_len
    return {'inputs': ('batch', None, None), 'lengths': ('batch',)}

  # ------------------------------------------------------------- loss and metrics

  def loss(self, outputs, batch):
    return losses.masked_mse(outputs.astype(jnp.float32), batch['targets'], _horizons(batch))

  def eval_sums(self, outputs, batch):
    """MSE and MAE of the model and of each baseline over every target step of the real
    windows."""
    sums, horizons = {}, _horizons(batch)
    for name, forecast in (('', outputs), *((f'{b}_', batch[b]) for b in BASELINES)):
      forecast = forecast.astype(jnp.float32)
      sums[f'{name}loss'] = losses.masked_mse(forecast, batch['targets'], horizons)
      sums[f'{name}mae'] = losses.masked_abs_error(forecast, batch['targets'], horizons)
    return sums

  # ------------------------------------------------------------------ prediction

  def predictions(self, outputs, batch):
    """'forecast' in the CSV's units, 'forecast_scaled' as the model sees it, and 'time'
    (the forecast rows' time stamps) when the batch has them."""
    scaler = self.sizes['scaler']
    idx = [scaler['columns'].index(c) for c in self.sizes['target_columns']]
    mean = jnp.asarray(np.asarray(scaler['mean'])[idx], jnp.float32)
    std = jnp.asarray(np.asarray(scaler['std'])[idx], jnp.float32)
    out = {'forecast': outputs * std + mean, 'forecast_scaled': outputs}
    if 'time' in batch:
      out['time'] = batch['time']
    return out

  # ------------------------------------------------------------------- reporting

  def report(self, predict, dev_set, dev_metrics, print_fn, plots_dir):
    """A plot of the first dev window's forecast; no extra fields (the baselines are
    metrics)."""
    if plots_dir is not None and len(dev_set['lengths']):
      preds = predict(dev_set)['forecast_scaled']
      forecast_output.plot_window(
        dev_set['inputs'][0][:, list(self.target_positions())],
        dev_set['targets'][0],
        preds[0],
        self.sizes['target_columns'],
        os.path.join(plots_dir, 'forecast_dev.png'),
        baselines={k: dev_set[k][0] for k in BASELINES},
      )
    return {}

  def final_line(self, train: dict, dev: dict, extra: dict) -> str:
    return (
      f'Final dev MSE {dev["loss"]:.4f} MAE {dev["mae"]:.4f} (last value {dev["last_loss"]:.4f}'
      f'/{dev["last_mae"]:.4f}, linear {dev["linear_loss"]:.4f}/{dev["linear_mae"]:.4f}); '
      f'train MSE {train["loss"]:.4f}'
    )


def _horizons(batch):
  """The target steps each window's error covers: all of them, or none for a padding
  window (length 0); `lengths` itself counts input steps."""
  return jnp.where(batch['lengths'] > 0, batch['targets'].shape[1], 0)


@functools.lru_cache(maxsize=4)
def _read(path, time_column, input_columns, target_columns) -> csv_series.Series:
  return csv_series.read_csv(path, time_column, input_columns, target_columns)


@functools.lru_cache(maxsize=4)
def _linear_baseline(key: tuple) -> ts_baselines.LinearBaseline:
  """The linear baseline fitted on the training windows (stride 1) of the task `key`
  describes, one channel at a time to bound the memory of the features."""
  d = dict(key)
  task = ForecastTask(data=d).fit()
  series = task.series()
  values = task.scaler().transform(series.values)
  windows = ts.make_windows(task.borders(len(series))['train'], d['input_len'], d['horizon'])
  inputs, _ = ts.gather(values, windows, series.target_index, series.target_index)
  targets = values[windows.target_rows()[..., None], series.target_index].astype(np.float32)
  if not d['baseline_individual']:
    fit = ts_baselines.fit_linear(inputs, targets, d['baseline_kernel'], False, d['baseline_ridge'])
    return fit
  parts = [
    ts_baselines.fit_linear(
      inputs[..., k : k + 1],
      targets[..., k : k + 1],
      d['baseline_kernel'],
      True,
      d['baseline_ridge'],
    ).weights
    for k in range(inputs.shape[-1])
  ]
  return ts_baselines.LinearBaseline(np.concatenate(parts), d['baseline_kernel'])
