"""The forecast task on generated CSV tables: windows, splits, scaler, training, evaluate
and predict. Nothing here needs ../shared."""

import json

import numpy as np
import pytest

from bilstm_jax import app, load
from bilstm_jax.errors import ConfigError
from bilstm_jax.tasks import forecast, forecast_output
from configs import ett
from tests.utils import assert_predict_agrees, each_member_alone

ROWS = 400  # fractions 0.7/0.1/0.2: train [0, 280), val [280, 320), test [320, 400)


def _write_csv(path, rows=ROWS, shift_test=0.0):
  """Hourly dates, a sine of period 24 and a sine of period 12 on a rising trend."""
  t = np.arange(rows)
  a = np.sin(2 * np.pi * t / 24)
  b = 0.5 * np.sin(2 * np.pi * t / 12) + 0.01 * t
  b[int(rows * 0.8) :] += shift_test
  stamps = np.datetime64('2020-01-01T00:00') + t.astype('timedelta64[h]')
  with open(path, 'w') as f:
    f.write('date,a,b\n')
    for s, x, y in zip(stamps, a, b, strict=True):
      f.write(f'{str(s).replace("T", " ")}:00,{x:.6f},{y:.6f}\n')
  return str(path)


def _config(path, **model):
  cfg = ett.get_config('tiny')
  cfg.data.path = str(path)
  for key, value in model.items():
    cfg.model[key] = value
  return cfg


def _task(path):
  cfg = _config(path)
  task = forecast.ForecastTask.from_config(cfg)
  return task.fit('train')


def test_windows_stay_inside_their_splits(tmp_path):
  path = _write_csv(tmp_path / 's.csv')
  task = _task(path)
  values = task.scaler().transform(task.series().values)
  test = task.read('test')
  # Test targets run over rows [320, 400): 80 - 4 + 1 windows; inputs look back 16 rows.
  assert test['inputs'].shape == (77, 16, 2) and test['targets'].shape == (77, 4, 2)
  np.testing.assert_allclose(test['inputs'][0], values[304:320], rtol=1e-6)
  np.testing.assert_allclose(test['targets'][0], values[320:324], rtol=1e-6)
  np.testing.assert_allclose(test['targets'][-1], values[396:400], rtol=1e-6)
  dev = task.read('dev')
  assert dev['targets'].shape[0] == 40 - 4 + 1
  np.testing.assert_allclose(dev['targets'][-1], values[316:320], rtol=1e-6)  # not into test
  train = task.read('train')
  assert train['targets'].shape[0] == 280 - 16 - 4 + 1
  np.testing.assert_allclose(train['targets'][-1], values[276:280], rtol=1e-6)
  # Baselines come with every labelled split, on the same windows.
  np.testing.assert_allclose(test['last'][0], np.repeat(values[319:320], 4, 0), rtol=1e-6)
  assert test['linear'].shape == test['targets'].shape


def test_scaler_is_fitted_on_training_rows_only(tmp_path):
  plain = _task(_write_csv(tmp_path / 'plain.csv'))
  shifted = _task(_write_csv(tmp_path / 'shifted.csv', shift_test=100.0))
  assert plain.sizes['scaler'] == shifted.sizes['scaler']
  raw = plain.series().values[:280]
  np.testing.assert_allclose(plain.sizes['scaler']['mean'], raw.mean(0))
  np.testing.assert_allclose(plain.sizes['scaler']['std'], raw.std(0))
  assert plain.read('test')['targets'].max() < shifted.read('test')['targets'].max() - 10


def test_future_times_continue_the_time_column():
  time = np.array(['2020-01-01T00:00', '2020-01-01T01:00', '2020-01-01T02:00'], 'datetime64[s]')
  got = forecast_output.future_times(time, 2).astype('datetime64[s]')
  assert (
    got.tolist() == np.array(['2020-01-01T03:00', '2020-01-01T04:00'], 'datetime64[s]').tolist()
  )
  np.testing.assert_array_equal(
    forecast_output.future_times(np.array([0.0, 0.5, 1.0]), 2), [1.5, 2.0]
  )


@pytest.mark.slow
def test_trains_evaluates_and_predicts_a_sine(tmp_path):
  path = _write_csv(tmp_path / 's.csv')
  cfg = _config(path)
  cfg.train.epochs = 8
  cfg.optim.learning_rate = 1e-2
  workdir = str(tmp_path / 'run')
  summary = app.train_and_evaluate(cfg, workdir)
  # Persistence is far off on a sine; the model must come close to the exact linear fit.
  assert summary['final_dev_loss'] < 0.1 * summary['final_dev_last_loss'], summary
  assert summary['final_dev_loss'] < 0.05, summary
  spec = json.loads((tmp_path / 'run' / 'task.json').read_text())
  assert spec['task'] == 'forecast' and spec['sizes']['target_columns'] == ['a', 'b']

  cfg.data.test = 'test'
  result = app.evaluate(cfg, workdir)
  for key in ('loss', 'mae', 'last_loss', 'last_mae', 'linear_loss', 'linear_mae'):
    assert np.isfinite(result[key]), key
  assert result['loss'] < 0.1 * result['last_loss']

  # A CSV's future: forecast rows named by their time stamps, as load().predict gives.
  [record] = assert_predict_agrees(workdir, path, tmp_path / 'pred.jsonl', config=cfg)
  rows = record['forecast']
  assert [r['time'] for r in rows[:2]] == ['2020-01-17 16:00:00', '2020-01-17 17:00:00']
  assert len(rows) == 4 and set(rows[0]) == {'time', 'a', 'b'}  # after the last row (399 h)
  # In the table's units: the next four steps of sine a continue from row 400.
  truth = np.sin(2 * np.pi * np.arange(400, 404) / 24)
  np.testing.assert_allclose([r['a'] for r in rows], truth, atol=0.25)
  arrays = load(workdir).predict_arrays(path)
  np.testing.assert_allclose([[r['a'], r['b']] for r in rows], arrays['forecast'][0], atol=1e-6)
  windows = load(workdir).predict('test')  # a split's windows: rows by step after each
  assert len(windows) == 77 and [r['step'] for r in windows[0]['forecast']] == [1, 2, 3, 4]

  csv_out = tmp_path / 'forecast.csv'
  forecast_output.write_forecast(load(workdir), path, str(csv_out), str(tmp_path / 'plots'))
  lines = csv_out.read_text().splitlines()
  assert lines[0] == 'date,a,b' and lines[1].startswith('2020-01-17 16:00:00,')
  assert len(lines) == 5
  assert (tmp_path / 'plots' / 'forecast.png').exists()


def test_linear_skip_adds_one_map_shared_by_the_channels():
  import jax

  model = forecast.WindowForecaster(
    hidden_size=4, horizon=3, out_channels=1, target_index=(1,), norm='last', linear_skip=True
  )
  x = jax.random.normal(jax.random.key(0), (2, 5, 2))
  variables = model.init(jax.random.key(1), x)
  assert variables['params']['linear_skip']['kernel'].shape == (5, 3)
  plain = forecast.WindowForecaster(
    hidden_size=4, horizon=3, out_channels=1, target_index=(1,), norm='last'
  )
  no_skip = {'params': {k: v for k, v in variables['params'].items() if k != 'linear_skip'}}
  # The skip's contribution is its map of the normalised window, on the target channel.
  normed = x - x[:, -1:]
  p = variables['params']['linear_skip']
  skip = np.einsum('btc,th->bhc', normed, p['kernel']) + p['bias'][None, :, None]
  np.testing.assert_allclose(
    model.apply(variables, x) - plain.apply(no_skip, x), skip[..., 1:], rtol=1e-5, atol=1e-5
  )


def test_linear_base_starts_as_the_linear_baseline(tmp_path):
  import jax

  cfg = _config(_write_csv(tmp_path / 's.csv'), linear_base=True)
  task = forecast.ForecastTask.from_config(cfg)
  task = task.fit('train')
  test = task.read('test')
  model = task.make_model()
  inputs = task.model_inputs(test)
  variables = model.init(jax.random.key(0), *inputs)
  variables['params']['lstm_scale'] = 0.0 * variables['params']['lstm_scale']
  np.testing.assert_allclose(model.apply(variables, *inputs), test['linear'], atol=1e-4)


def test_val_is_dev_and_another_csv_is_scored_on_every_window(tmp_path):
  task = _task(_write_csv(tmp_path / 's.csv'))
  np.testing.assert_array_equal(task.read('val')['targets'], task.read('dev')['targets'])
  other = task.read(_write_csv(tmp_path / 'other.csv', rows=50))
  assert other['targets'].shape == (50 - 16 - 4 + 1, 4, 2)
  future = task.read(str(tmp_path / 'other.csv'), labelled=False)
  assert future['inputs'].shape == (1, 16, 2) and future['time'].shape == (1, 4)


def test_univariate_features_and_targets_the_model_cannot_read(tmp_path):
  path = _write_csv(tmp_path / 's.csv')
  cfg = _config(path)
  cfg.data.features, cfg.data.target = 'S', 'b'
  task = forecast.ForecastTask.from_config(cfg)
  task = task.fit('train')
  assert task.read('test')['inputs'].shape[-1] == 1 and task.sizes['target_columns'] == ['b']
  cfg = _config(path)
  cfg.data.input_columns, cfg.data.target_columns = 'a', 'b'
  with pytest.raises(ConfigError, match='must also be input columns'):
    forecast.ForecastTask.from_config(cfg).fit('train')


@pytest.mark.slow
def test_a_seed_ensemble_scores_its_mean_forecast(tmp_path):
  cfg = ett.get_config('tiny_ensemble')
  cfg.data.path = _write_csv(tmp_path / 's.csv')
  cfg.ensemble.num_members = 3
  assert cfg.train.metric == 'ensemble_dev_loss'
  workdir = str(tmp_path / 'ens')
  summary = app.train_and_evaluate(cfg, workdir)
  trained = load(workdir)
  test = trained.task.read('test')
  forecasts = each_member_alone(trained, test)
  mean = np.mean(forecasts, axis=0)
  assert not np.allclose(forecasts[0], forecasts[1])  # the seeds made different members
  result = trained.evaluate('test')
  np.testing.assert_allclose(result['loss'], np.mean((mean - test['targets']) ** 2), rtol=1e-5)
  np.testing.assert_allclose(
    result['member_loss'], [np.mean((f - test['targets']) ** 2) for f in forecasts], rtol=1e-5
  )
  assert summary['ensemble_dev_loss'] == min(e['ensemble_dev_loss'] for e in summary['history'])
