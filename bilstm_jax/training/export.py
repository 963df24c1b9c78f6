"""The inference function as serialized StableHLO (`jax.export`), callable without this code.

`export_predict` writes `DIR/export/predict.jaxexport` (the serialized `jax.export.Exported`
with the trained parameters baked in as constants) and `DIR/export/signature.json`. Batch
and time are symbolic, so any batch size and sequence length work. From a fresh process,
with only jax installed:

  from jax import export
  fn = export.deserialize(open('DIR/export/predict.jaxexport', 'rb').read())
  predictions = fn.call(inputs, lengths)   # the model's inputs, e.g. float32[b, t, f], int32[b]
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
from jax import export as jax_export  # a submodule that `import jax` alone may not load

from bilstm_jax import faults
from bilstm_jax.nn import native

FILENAME = 'predict.jaxexport'


def export_predict(model, variables, example_inputs: tuple, directory: str) -> jax_export.Exported:
  """Exports `model.apply(variables, *inputs)` (deterministic) to `directory`.

  Args:
    model: the Flax module.
    variables: its trained variables ({'params': ..., other collections}), baked into the
      exported function.
    example_inputs: the model's positional inputs for one example batch (the task's
      `model_inputs(example_batch())`); their first axis (batch) and, for arrays of rank
      >= 2, second axis (time) become symbolic, so any batch size and length work. A
      None input stays None and is not an argument of the exported function.
    directory: where `predict.jaxexport` and `signature.json` go.

  Returns:
    The `jax.export.Exported`.
  """

  faults.point('export')
  # An input the model takes as None (e.g. no character ids before word vectors) is left
  # out of the exported signature and passed as None inside.
  given = [i for i, x in enumerate(example_inputs) if x is not None]

  def predict(*arrays):
    inputs = [None] * len(example_inputs)
    for i, x in zip(given, arrays, strict=True):
      inputs[i] = x
    return model.apply(variables, *inputs)

  b, t = jax_export.symbolic_shape('b, t')

  def symbolic(x):
    x = jnp.asarray(x)
    shape = (b,) + ((t,) + x.shape[2:] if x.ndim >= 2 else x.shape[1:])
    return jax.ShapeDtypeStruct(shape, x.dtype)

  specs = [symbolic(example_inputs[i]) for i in given]
  with native.disabled():  # the portable scan: the CPU kernel is a machine-local custom call
    exported = jax_export.export(jax.jit(predict))(*specs)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, FILENAME)
  with open(path + '.tmp', 'wb') as f:
    f.write(exported.serialize())
  os.replace(path + '.tmp', path)
  names = ('inputs', 'lengths')
  signature = {
    'file': FILENAME,
    'inputs': {
      names[i] if i < len(names) else f'arg{i}': str(a) for i, a in enumerate(exported.in_avals)
    },
    'outputs': [str(a) for a in exported.out_avals],
    'platforms': list(exported.platforms),
  }
  tmp = os.path.join(directory, 'signature.json.tmp')
  with open(tmp, 'w') as f:
    json.dump(signature, f, indent=2)
  os.replace(tmp, os.path.join(directory, 'signature.json'))
  return exported


def load(directory: str):
  """The exported predict function: `fn(inputs, lengths) -> predictions`."""
  with open(os.path.join(directory, FILENAME), 'rb') as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  return exported.call
