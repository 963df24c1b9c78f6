"""The inference function as serialized StableHLO (`jax.export`), callable without this code.

`export_predict` writes `DIR/export/predict.jaxexport` (the serialized `jax.export.Exported`
with the trained parameters baked in as constants) and `DIR/export/signature.json`. Batch
and time are symbolic, so any batch size and sequence length work. From a fresh process,
with only jax installed:

  from jax import export
  fn = export.deserialize(open('DIR/export/predict.jaxexport', 'rb').read())
  predictions = fn.call(inputs, lengths)   # float32[b, t, features], int32[b]
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
from jax import export as jax_export  # a submodule that `import jax` alone may not load

from bilstm_jax.nn import native

FILENAME = 'predict.jaxexport'


def export_predict(model, params, input_size: int, directory: str) -> jax_export.Exported:
  """Exports `model.apply(params, inputs, lengths)` (deterministic) to `directory`.

  Args:
    model: the Flax module (called as `model(inputs, lengths)`).
    params: its trained parameters, baked into the exported function.
    input_size: features per step.
    directory: where `predict.jaxexport` and `signature.json` go.

  Returns:
    The `jax.export.Exported`.
  """

  def predict(inputs, lengths):
    return model.apply({'params': params}, inputs, lengths)

  b, t = jax_export.symbolic_shape('b, t')
  with native.disabled():  # the portable scan: the CPU kernel is a machine-local custom call
    exported = jax_export.export(jax.jit(predict))(
      jax.ShapeDtypeStruct((b, t, input_size), jnp.float32),
      jax.ShapeDtypeStruct((b,), jnp.int32),
    )
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, FILENAME)
  with open(path + '.tmp', 'wb') as f:
    f.write(exported.serialize())
  os.replace(path + '.tmp', path)
  signature = {
    'file': FILENAME,
    'inputs': {'inputs': f'float32[b, t, {input_size}]', 'lengths': 'int32[b]'},
    'outputs': [str(a) for a in exported.out_avals],
    'platforms': list(exported.platforms),
  }
  with open(os.path.join(directory, 'signature.json'), 'w') as f:
    json.dump(signature, f, indent=2)
  return exported


def load(directory: str):
  """The exported predict function: `fn(inputs, lengths) -> predictions`."""
  with open(os.path.join(directory, FILENAME), 'rb') as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  return exported.call
