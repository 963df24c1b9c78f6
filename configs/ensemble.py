"""16 members of the default model sweeping the learning rate, trained as one program.

The default config (`configs/default.py`: bidir_window, BiLSTM hidden 8, batch 16, 50
epochs) with an `ensemble` block: 16 members, learning rates drawn log-uniformly from
[1e-4, 0.3], all members on the same batches. At the end train.py prints a per-member
table (learning rate, final train and dev loss) and names the best member.

  python train.py --config configs/ensemble.py --workdir /tmp/ens
  python train.py --config configs/ensemble.py --workdir /tmp/ens \
      --config.ensemble.data_mode=bootstrap --config.ensemble.learning_rate='(0.01, 0.01)'
  # smoke (seconds):
  python train.py --config configs/ensemble.py --workdir /tmp/ens \
      --config.train.epochs=2 --config.ensemble.num_members=3
"""

import ml_collections

from bilstm_jax.configs import default


def get_config() -> ml_collections.ConfigDict:
  config = default.get_config()

  config.ensemble = ml_collections.ConfigDict()
  config.ensemble.num_members = 16  # member i is seeded with config.seed + i
  # 'shared' (all members on the same batches), 'shuffled' (every example, in each member's
  # own order), 'bootstrap' (each member resamples the training set with replacement:
  # bagging) or 'subsets' (disjoint n // N examples each).
  config.ensemble.data_mode = 'shared'
  # Per-member hyperparameters as (low, high); low == high is a constant. Learning rate,
  # weight decay and init scale are log-uniform when low > 0, dropout is uniform. None:
  # the config's own value (optim.weight_decay, model.dropout) after the command line; an
  # explicit range replaces it and must contain it (bilstm_jax/ensembles/hparams.py).
  config.ensemble.learning_rate = (1e-4, 0.3)  # contains optim.learning_rate (0.01)
  # > 0 switches to AdamW (decoupled decay).
  config.ensemble.weight_decay = ml_collections.config_dict.placeholder(tuple)
  # Between stacked layers only.
  config.ensemble.dropout = ml_collections.config_dict.placeholder(tuple)
  config.ensemble.init_scale = (1.0, 1.0)  # multiplies each member's initial parameters
  config.ensemble.sampling = 'random'  # 'random' (independent draws) or 'grid' (even spacing)
  # Checkpoints, resume and early stopping as for one model. What train.metric (default
  # 'dev_loss') means here: the best member's dev loss, so checkpoints rank and patience
  # counts by whether any member improved; 'median_dev_loss' (the median member's) and
  # 'ensemble_dev_loss' (the mean prediction's) are the alternatives.
  # config.mesh.member > 1 (or -1) splits the members over that many devices.
  return config
