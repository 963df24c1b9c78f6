"""Interop with other frameworks: PyTorch state dicts both ways (`bilstm_jax.interop.pytorch`)."""

from bilstm_jax.interop.pytorch import (
  dense_from_torch,
  dense_to_torch,
  lstm_config_from_torch,
  lstm_from_torch,
  lstm_to_torch,
  regressor_from_torch,
  regressor_to_torch,
)

__all__ = [
  'dense_from_torch',
  'dense_to_torch',
  'lstm_config_from_torch',
  'lstm_from_torch',
  'lstm_to_torch',
  'regressor_from_torch',
  'regressor_to_torch',
]
