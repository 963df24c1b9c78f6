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
  config.model.embed_size = 64  # token-id inputs only: the embedding size
  config.model.embed_dropout = 0.0  # token-id inputs only: dropout on the embeddings
  config.model.pooling = 'mean'  # classification: 'mean', 'max' or 'attention' (valid steps)
  # Text models only: > 0 trains also on embeddings perturbed by this L2 norm per sentence
  # in the loss's steepest direction (adversarial training, Miyato et al. 2017).
  config.model.adversarial = 0.0

  config.data = ml_collections.ConfigDict()
  # 'bidir_window' (learnable, needs both directions) or 'seed_noise' (tutorial's data):
  # synthetic regression. On your own files: 'regression', 'tagging' or 'classification'
  # with data.train and data.dev (.npz or .jsonl, see bilstm_jax/data/files.py); the
  # feature, vocabulary and class counts then come from the training file, and the sizes
  # below describe the synthetic tasks only.
  config.data.task = 'bidir_window'
  config.data.train = ''  # a training file ('' with a synthetic task: generated)
  config.data.dev = ''  # a dev file ('' with a synthetic task: generated)
  config.data.input_size = 5
  config.data.output_size = 1
  config.data.seq_len = 10
  # None: the task's own size (seed_noise: the tutorial's 16; bidir_window: 256).
  config.data.num_train = ml_collections.config_dict.placeholder(int)
  config.data.num_dev = 256
  config.data.min_length = ml_collections.config_dict.placeholder(int)  # None: all full length
  config.data.seed = 0  # the data is a pure function of this seed
  # --mode=evaluate/predict: a split ('train', 'dev') or a file (.npz or .jsonl).
  config.data.test = 'dev'
  # > 0: pad each batch to one of this many length buckets (the boundaries of least total
  # padding of the training lengths) instead of the longest sequence; bounds the shapes.
  config.data.buckets = 0
  # > 0: also cut each compiled call's width axis (the text tasks' characters per word) to
  # one of this many width buckets fitted on the training examples' widths; 0: full width.
  config.data.width_buckets = 0

  config.optim = ml_collections.ConfigDict()
  config.optim.name = 'adam'  # 'adam', 'adamw' (decoupled weight decay) or 'sgd'
  config.optim.learning_rate = 0.01  # the peak rate when a schedule is set
  config.optim.weight_decay = 0.0  # adamw (decoupled) or sgd (L2 on the gradient)
  config.optim.momentum = 0.9  # sgd only; 0 = plain SGD
  config.optim.schedule = 'constant'  # 'constant', 'warmup_cosine' (to 0 at the end) or 'step'
  config.optim.warmup_steps = 0  # warmup_cosine: linear warmup from 0 over these steps
  config.optim.decay_every_steps = 0  # step: multiply the rate by decay_rate every N steps
  config.optim.decay_rate = 0.1
  config.optim.grad_clip_norm = 0.0  # clip gradients to this global norm; 0 = no clipping

  config.train = ml_collections.ConfigDict()
  config.train.epochs = 50
  config.train.num_steps = 0  # > 0: train this many optimiser steps instead of `epochs`
  config.train.batch_size = 16
  config.train.shuffle = True
  config.train.log_every_epochs = 10
  # Optimiser steps per compiled call (lax.scan over batches); 0 = a whole epoch.
  config.train.steps_per_call = 0
  # The dev metric that ranks checkpoints and drives early stopping, and its direction.
  config.train.metric = 'dev_loss'
  config.train.metric_mode = 'min'
  # Stop after this many evaluations (every log_every_epochs) without a better metric;
  # 0 = never stop early.
  config.train.early_stopping_patience = 0

  config.checkpoint = ml_collections.ConfigDict()
  # Checkpoints go to workdir/checkpoints/ at every evaluation, at the end, and (if > 0) at
  # the first chunk boundary after every N steps.
  config.checkpoint.save_every_steps = 0
  config.checkpoint.keep_best = 3  # keep the best K by train.metric (and the newest)

  # Device mesh (bilstm_jax/sharding.py): axis sizes, -1 = all the devices left over.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.member = 1  # ensemble members split over this many devices
  config.mesh.data = -1  # each batch split over this many devices (data parallelism)
  config.mesh.model = 1  # > 1: parameters and optimiser state split over this many devices

  # Several processes (hosts), see README "Scaling out". Unset: one process, unless the
  # JAX_COORDINATOR_ADDRESS environment variable is set.
  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator = ''  # 'host:port' where process 0 listens
  config.distributed.num_processes = ml_collections.config_dict.placeholder(int)
  config.distributed.process_id = ml_collections.config_dict.placeholder(int)  # 0 .. n - 1
  config.distributed.auto_detect = False  # True: JAX reads a SLURM / Open MPI / TPU job's env
  config.distributed.timeout_s = 300  # how long to wait for every process to connect
  return config


def seed_ensemble(config: ml_collections.ConfigDict, num_members: int = 8) -> None:
  """Adds an `ensemble` block: members that differ only in their seeds.

  Initialisation, dropout masks and word dropout differ; the learning rate, weight decay
  and dropout rate are the config's. All members see the same batches in one vmapped
  program (`--config.ensemble.data_mode=shuffled`: each its own order). `--mode=evaluate`
  scores the combined output (`Task.combine`: mean probabilities, mean forecasts, or a
  CRF's mean emissions and transitions).

  The members' ranges are left unset (None): each is read from `optim.learning_rate`,
  `optim.weight_decay` or `model.dropout` when the run starts, after the command line, so
  `--config.model.dropout=0.5` reaches every member. A range set explicitly
  (`--config.ensemble.dropout='(0.3, 0.5)'`) replaces the config's value for the members
  and must contain it; otherwise the run stops with an `Error:` naming both keys
  (`bilstm_jax/ensembles/hparams.py`).
  """
  config.ensemble = ml_collections.ConfigDict()
  config.ensemble.num_members = num_members
  config.ensemble.data_mode = 'shared'
  # (low, high) per member hyperparameter; None: the config's own value (see above).
  config.ensemble.learning_rate = ml_collections.config_dict.placeholder(tuple)
  config.ensemble.weight_decay = ml_collections.config_dict.placeholder(tuple)
  config.ensemble.dropout = ml_collections.config_dict.placeholder(tuple)
  config.ensemble.init_scale = (1.0, 1.0)
  config.ensemble.sampling = 'grid'


def apply_variant(
  config: ml_collections.ConfigDict, variant: str, tiny, combined: bool = True, extra=None
):
  """The variants every task config offers: '', 'tiny', 'ensemble' and 'tiny_ensemble', and
  a config's own (`extra`), which combine the same way: 'glove', 'glove_ensemble',
  'tiny_glove'... (words joined by '_', each applied once: the config's own first, then
  tiny, then ensemble).

  tiny: a function that shrinks `config` in place to a seconds-long run.
  combined: an ensemble ranks checkpoints (and stops early) by its combined output's dev
    metric (`ensemble_dev_...`) instead of the best member's.
  extra: {name: function changing `config` in place} of the config's own variants.
  """
  extra = dict(extra or {})
  words = variant.split('_') if variant else []
  known = ['tiny', 'ensemble', *extra]
  if any(w not in known for w in words) or len(set(words)) != len(words):
    names = ['', 'tiny', 'ensemble', 'tiny_ensemble', *extra, *(f'{e}_ensemble' for e in extra)]
    raise ValueError(f'Unknown variant {variant!r}; expected one of {tuple(names)}.')
  for name, change in extra.items():
    if name in words:
      change(config)
  if 'tiny' in words:
    tiny(config)
  if 'ensemble' in words:
    seed_ensemble(config)
    if combined:
      config.train.metric = 'ensemble_' + config.train.metric
  return config
