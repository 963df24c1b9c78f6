"""The reusable recurrent layer: `BiLSTM`, its implementations and the CPU kernel.

lstm.py        `BiLSTM`: parameters, masking, both directions, stacking, impl choice
recurrence.py  one layer as input projection + `lax.scan` (the reference)
fused.py       the default layer: a custom JVP with a hand-written backward pass
linear_pair.py a linear map and its transpose as primitives (used by fused.py)
cudnn.py       the layer through cuDNN (GPU only)
norm.py        `MaskedBatchNorm`: batch norm over the valid steps of padded sequences
native/        the two loops as a multi-threaded C++ kernel (XLA FFI), for CPUs
"""

from bilstm_jax.nn.lstm import BiLSTM, pytorch_uniform, register_layer_impl
from bilstm_jax.nn.norm import MaskedBatchNorm

__all__ = ['BiLSTM', 'MaskedBatchNorm', 'pytorch_uniform', 'register_layer_impl']
