"""The PyTorch tutorial's setup on a task that needs both directions.

Model: BiLSTM(input 5, hidden 8, bidirectional) + Linear(16 -> 1); batch 16, sequence 10,
Adam lr 0.01, 50 epochs, the loss printed every 10 epochs.

  python train.py --config configs/default.py --workdir /tmp/run
  python train.py --config configs/default.py --workdir /tmp/run \
      --config.data.task=seed_noise          # the tutorial's exact random data
  python train.py --config configs/default.py --workdir /tmp/run \
      --config.model.bidirectional=False     # forward-only baseline
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # parameter init, dropout and shuffling

  config.model = ml_collections.ConfigDict()
  config.model.hidden_size = 8  # units per direction
  config.model.num_layers = 1
  config.model.dropout = 0.0  # between stacked layers, as in PyTorch
  config.model.bidirectional = True
  config.model.dtype = 'float32'  # or 'bfloat16' for the matmuls (params stay float32)
  config.model.impl = ''  # recurrence implementation; '' = the library default

  config.data = ml_collections.ConfigDict()
  # 'bidir_window' (learnable, needs both directions) or 'seed_noise' (tutorial's data).
  config.data.task = 'bidir_window'
  config.data.input_size = 5
  config.data.output_size = 1
  config.data.seq_len = 10
  # None: the task's own size (seed_noise: the tutorial's 16; bidir_window: 256).
  config.data.num_train = ml_collections.config_dict.placeholder(int)
  config.data.num_dev = 256
  config.data.min_length = ml_collections.config_dict.placeholder(int)  # None: all full length
  config.data.seed = 0  # the data is a pure function of this seed

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adam'
  config.optim.learning_rate = 0.01

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 50
  config.train.batch_size = 16
  config.train.shuffle = True
  config.train.log_every_epochs = 10
  # Optimiser steps per compiled call (lax.scan over batches); 0 = a whole epoch.
  config.train.steps_per_call = 0
  return config
