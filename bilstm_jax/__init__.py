"""bilstm_jax: a fast, PyTorch-compatible bidirectional LSTM for JAX/Flax."""

from bilstm_jax.models import BiLSTMRegressor
from bilstm_jax.nn.lstm import BiLSTM

__all__ = ['BiLSTM', 'BiLSTMRegressor']
__version__ = '0.1.0'
