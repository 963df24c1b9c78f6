"""bilstm_jax: a fast, PyTorch-compatible bidirectional LSTM for JAX/Flax."""

from bilstm_jax.lstm import BiLSTM
from bilstm_jax.models import BiLSTMRegressor

__all__ = ['BiLSTM', 'BiLSTMRegressor']
__version__ = '0.1.0'
