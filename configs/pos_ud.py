"""UD English-EWT UPOS tagging: word + character-CNN embeddings, a 2-layer BiLSTM, softmax.

  python train.py --config=pos_ud --workdir=runs/pos_ud
  python train.py --workdir=runs/pos_ud --mode=evaluate --config.data.test=FILE.conllu
  python train.py --workdir=runs/pos_ud --mode=predict --input=sentences.txt --output=tags.conll

Data paths are relative to the repository root (see ../shared/data/ud_ewt/SOURCE.md).
`configs/pos_ud.py:tiny` is a seconds-long model for tests (set data.train/dev).
"""

import ml_collections

from bilstm_jax.configs import default


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = default.get_config()
  config.data.task = 'text_tagging'
  config.data.format = 'conllu'
  config.data.tag_column = 'upos'  # or 'xpos' (PTB tags)
  config.data.token_column = 0  # CoNLL column files only
  config.data.scheme = ''  # POS tags are not entity tags: no conversion
  config.data.entities = False  # no span F1
  config.data.train = '../shared/data/ud_ewt/en_ewt-ud-train.conllu'
  config.data.dev = '../shared/data/ud_ewt/en_ewt-ud-dev.conllu'
  config.data.test = 'dev'  # --mode=evaluate; 'test' scores data.test_file (and logs it)
  config.data.test_file = '../shared/data/ud_ewt/en_ewt-ud-test.conllu'  # official test
  config.data.lowercase = True  # word embeddings; the character CNN sees case
  config.data.min_count = 2  # singletons map to <unk>, which word_dropout then trains
  config.data.max_vocab = 0
  config.data.max_word_len = 20  # characters kept per word
  config.data.buckets = 6
  # Off: a compiled call holds a whole length bucket, whose longest word is at the cap, so
  # width buckets cut nothing in training and add evaluation shapes (benchmarks/NOTES.md).
  config.data.width_buckets = 0

  config.model.embed_size = 100  # with word_vectors: the vectors' dimension instead
  # Pretrained vectors (GloVe / word2vec / fastText text, gz or not; word2vec .bin): every
  # word with a vector is represented by it (bilstm_jax.tasks.text). '' = none.
  config.model.word_vectors = ''
  config.model.word_vectors_trainable = False  # True: fine-tune them (a trained offset)
  config.model.chars = 'cnn'  # '', 'cnn' or 'lstm'
  config.model.char_embed_size = 30
  config.model.char_features = 50
  config.model.hidden_size = 128
  config.model.num_layers = 2
  config.model.dropout = 0.33
  config.model.embed_dropout = 0.33
  config.model.word_dropout = 0.05  # replace a word by <unk> in training
  config.model.norm = ''  # '', 'layer' or 'batch' (over valid steps) between stacked layers
  config.model.crf = False

  config.optim.name = 'adam'
  config.optim.learning_rate = 2e-3
  config.optim.schedule = 'warmup_cosine'
  config.optim.warmup_steps = 200
  config.optim.grad_clip_norm = 5.0

  # 20 epochs, patience 5: on dev, better than 10 from scratch (95.09 against 94.75) and
  # with GloVe (benchmarks/TEXT_NOTES.md, 2026-12-05).
  config.train.epochs = 20
  config.train.batch_size = 32
  config.train.log_every_epochs = 1
  config.train.steps_per_call = 0  # one compiled call per length bucket: few shapes to compile
  config.train.metric = 'dev_accuracy'
  config.train.metric_mode = 'max'
  config.train.early_stopping_patience = 5
  config.checkpoint.keep_best = 1

  return default.apply_variant(config, variant, tiny, extra={'glove': glove})


GLOVE = '../shared/data/glove/glove.6B.50d.txt.gz'  # ../shared/data/glove/SOURCE.md


def glove(config: ml_collections.ConfigDict) -> None:
  """GloVe 6B 50d vectors, fine-tuned, in place of the trained word embeddings."""
  config.model.word_vectors = GLOVE
  config.model.word_vectors_trainable = True


def tiny(config: ml_collections.ConfigDict) -> None:
  """Seconds on a CPU: a small model, a few epochs, no early stopping."""
  config.model.embed_size = 16
  config.model.char_embed_size = 8
  config.model.char_features = 8
  config.model.hidden_size = 16
  config.model.num_layers = 2
  config.model.dropout = 0.1
  config.model.embed_dropout = 0.1
  config.optim.learning_rate = 1e-2
  config.optim.warmup_steps = 0
  config.optim.schedule = 'constant'
  config.train.epochs = 8
  config.train.batch_size = 8
  config.train.steps_per_call = 0
  config.train.log_every_epochs = 4
  config.train.early_stopping_patience = 0
  config.data.buckets = 2
  config.data.min_count = 1
