"""SST-2 (GLUE) sentence sentiment: word embeddings, BiLSTM, max pooling over valid words.

  python train.py --config=sst2 --workdir=runs/sst2
  python train.py --config=configs/sst2.py:ensemble --workdir=runs/sst2_ens \
      --config.ensemble.data_mode=shuffled --config.train.epochs=8
  python train.py --workdir=runs/sst2 --mode=predict --input=reviews.txt --output=labels.jsonl

No pretrained embeddings, no character features (the GLUE text is lowercased). Adversarial
training on the embeddings (size 0.1, chosen on dev over 0.05-0.5; benchmarks/TEXT_NOTES.md).
SST-2 has no open license (../shared/data/sst2/SOURCE.md): never commit it.
"""

import ml_collections

from bilstm_jax.configs import default, pos_ud


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = pos_ud.get_config()
  config.data.task = 'text_classification'
  config.data.train = '../shared/data/sst2/glue/train.tsv'
  config.data.dev = '../shared/data/sst2/glue/dev.tsv'
  config.data.test_file = '../shared/data/sst2/test_labeled.tsv'  # SST test, GLUE sentences
  config.data.lowercase = True
  config.data.min_count = 1
  config.data.buckets = 4

  config.model.chars = ''
  config.model.embed_size = 128
  config.model.hidden_size = 128
  config.model.num_layers = 1
  config.model.dropout = 0.5
  config.model.embed_dropout = 0.3
  config.model.word_dropout = 0.0
  config.model.pooling = 'max'
  config.model.adversarial = 0.1

  config.optim.learning_rate = 1e-3
  config.optim.weight_decay = 0.0
  config.train.epochs = 6
  config.train.batch_size = 64
  config.train.metric = 'dev_accuracy'
  config.train.metric_mode = 'max'
  config.train.early_stopping_patience = 3
  return default.apply_variant(config, variant, pos_ud.tiny, extra={'glove': pos_ud.glove})
