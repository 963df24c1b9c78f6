"""ETT long-horizon forecasting (Informer's ETTh1/ETTh2/ETTm1 files) or any CSV table.

The benchmark protocol: 12/4/4-month row splits, a scaler fitted on the training rows,
MSE and MAE on the standardised scale over every val/test window (stride 1). Tune on the
validation range ('dev'); score the test range once per final configuration.

  python train.py --config=ett --workdir=runs/etth1_M_96_96
  python train.py --config=ett --workdir=runs/etth1_M_96_96 --config.data.horizon=336
  python train.py --config=ett --workdir=runs/ettm1 \
      --config.data.path=../shared/data/ett/ETTm1.csv --config.data.ett_freq=m
  python train.py --workdir=runs/etth1_M_96_96 --mode=evaluate --config.data.test=test
  python train.py --workdir=runs/etth1_M_96_96 --mode=predict \
      --input=../shared/data/ett/ETTh1.csv --output=forecast.jsonl

The evaluate line holds the model's `loss` (MSE) and `mae` beside the last-value
(`last_*`) and DLinear-style linear (`linear_*`) baselines on the same windows. Predict
writes 'forecast' (the table's units) and 'time' (Unix seconds) for the rows after the
file's end; `bilstm_jax.tasks.forecast_output.write_forecast` writes them as a CSV with
dates and draws plots/forecast.png. The ETTm1 runs used --config.data.stride=4 (every
4th training window; val and test keep every window).
"""

import ml_collections

from bilstm_jax.configs import default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = default.get_config()
  d = config.data
  d.task = 'forecast'
  d.path = '../shared/data/ett/ETTh1.csv'  # relative to the repository root
  d.time_column = 'date'  # '' if the rows are simply consecutive
  d.features = 'M'  # 'M': all inputs -> all; 'S': target -> target; 'MS': all -> target
  d.target = 'OT'  # the target column of 'S' and 'MS'
  d.input_columns = ''  # 'M': comma-separated inputs ('' = every column but the time)
  d.target_columns = ''  # 'M': comma-separated targets ('' = the inputs)
  d.input_len = 96  # rows the model reads (the benchmarks use 96 or 336)
  d.horizon = 96  # rows it forecasts (96, 192, 336 or 720)
  d.stride = 1  # rows between training windows (val and test always use every window)
  # 'ett': the 12/4/4-month borders (ett_freq 'h' hourly, 'm' 15-minute files); 'rows':
  # split_rows = 'train_start,val_start,test_start,end'; 'fractions': the first
  # train_fraction of the rows train, the last test_fraction test, the rest val.
  d.split = 'ett'
  d.ett_freq = 'h'
  d.split_rows = ''
  d.train_fraction = 0.7
  d.test_fraction = 0.2
  # The linear baseline (closed-form ridge, one map per channel if individual).
  d.baseline_ridge = 1e-2
  d.baseline_individual = True
  d.baseline_kernel = 25  # moving-average width of its trend/remainder split
  d.test = 'test'  # --mode=evaluate: 'test', 'dev' (= 'val') or another CSV

  m = config.model
  m.hidden_size = 256
  m.num_layers = 1
  m.bidirectional = True
  m.dropout = 0.5
  m.channel_independent = True  # every channel alone through shared weights
  m.norm = 'last'  # instance norm: 'none', 'last', 'mean' or 'revin'
  # 0: the LSTM reads every step; k: it reads segments of k steps, each embedded by a
  # dense layer (SegRNN, Lin et al. 2023); input_len must be a multiple of k.
  m.segment_len = 16
  m.head_input = 'flatten'  # the head reads every step ('flatten') or final states ('final')
  m.linear_skip = False  # True: add a learned linear map of the window
  # True: the forecast is the fitted linear baseline's (frozen) plus the LSTM's, whose
  # weight starts at 0, so the LSTM learns what the linear forecast misses.
  m.linear_base = False

  config.optim.learning_rate = 1e-3
  config.train.epochs = 10
  config.train.batch_size = 128
  config.train.log_every_epochs = 1
  config.train.metric = 'dev_loss'
  config.train.early_stopping_patience = 3
  config.checkpoint.keep_best = 1
  return default.apply_variant(config, variant, tiny)


def tiny(config: ml_collections.ConfigDict) -> None:
  """Seconds on a CPU: a small model on a generated CSV (set data.path) split by fractions."""
  config.data.split = 'fractions'
  config.data.input_len = 16
  config.data.horizon = 4
  config.model.hidden_size = 8
  config.model.segment_len = 4
  config.model.dropout = 0.0
  config.train.epochs = 3
  config.train.batch_size = 16
  config.train.early_stopping_patience = 0
