"""WNUT-17 emerging entities (BIO, 6 types): the CoNLL-2003 BiLSTM-CRF on social media text.

  python train.py --config=ner_wnut17 --workdir=runs/ner_wnut17
  python train.py --config=configs/ner_wnut17.py:ensemble --workdir=runs/ner_wnut17_ens

Data: ../shared/data/wnut17 (CC BY 4.0; Derczynski et al. 2017). Ranked by dev entity F1.
"""

import ml_collections

from configs import ner_conll2003, pos_ud


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = ner_conll2003.get_config()
  config.data.train = '../shared/data/wnut17/wnut17train.conll'
  config.data.dev = '../shared/data/wnut17/emerging.dev.conll'
  config.data.scheme = 'BIO'  # already BIO; converting also repairs stray I- tags
  config.train.epochs = 20
  config.train.batch_size = 16
  config.train.early_stopping_patience = 5
  if variant in ('ensemble', 'tiny_ensemble'):
    # 8 members that differ only in their seeds (initialisation, dropout, word dropout),
    # trained as one vmapped program on the same batches; combined by averaging their
    # emissions and transition scores, decoded by one Viterbi pass.
    config.ensemble = ml_collections.ConfigDict()
    config.ensemble.num_members = 8
    config.ensemble.data_mode = 'shared'
    lr, dropout = config.optim.learning_rate, config.model.dropout
    config.ensemble.learning_rate = (lr, lr)
    config.ensemble.weight_decay = (0.0, 0.0)
    config.ensemble.dropout = (dropout, dropout)
    config.ensemble.init_scale = (1.0, 1.0)
    config.ensemble.sampling = 'grid'
  if variant in ('tiny', 'tiny_ensemble'):
    pos_ud.tiny(config)
  elif variant not in ('', 'ensemble'):
    raise ValueError(
      f"Unknown variant {variant!r}; expected '', 'tiny', 'ensemble' or 'tiny_ensemble'."
    )
  return config
