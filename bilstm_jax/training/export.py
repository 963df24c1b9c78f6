"""The inference function as serialized StableHLO (`jax.export`), callable without this code.

`export_predict` writes `DIR/export/predict.jaxexport` (the serialized `jax.export.Exported`
with the trained parameters baked in as constants) and `DIR/export/signature.json`. The
function takes the arrays of the task's `example_batch()` in order (`signature.json` names
them); the axes the task's `export_axes()` names are symbolic (by default batch, and time
for a sequence task), so any batch size and sequence length work. From a fresh process,
with only jax installed:

  from jax import export
  fn = export.deserialize(open('DIR/export/predict.jaxexport', 'rb').read())
  predictions = fn.call(inputs, lengths)   # e.g. float32[b, t, f], int32[b]
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


def export_predict(model, variables, task, directory: str) -> jax_export.Exported:
  """Exports `model.apply(variables, *task.model_inputs(batch))` (deterministic).

  The exported function takes the arrays of `task.example_batch()`, in its key order
  (e.g. `inputs`, `lengths`); the axes `task.export_axes()` names are symbolic, the others
  keep the example batch's sizes.

  Args:
    model: the Flax module.
    variables: its trained variables ({'params': ..., other collections}), baked into the
      exported function.
    task: the fitted task (`example_batch`, `export_axes`, `model_inputs`).
    directory: where `predict.jaxexport` and `signature.json` go.

  Returns:
    The `jax.export.Exported`.
  """

  faults.point('export')
  batch, axes = task.example_batch(), task.export_axes()
  keys = list(batch)
  for key in keys:
    if len(axes.get(key, ())) != batch[key].ndim:
      raise ValueError(
        f'{type(task).__name__}.export_axes() names {axes.get(key)!r} for {key!r}, an array '
        f'of rank {batch[key].ndim}: give one name (or None) per axis.'
      )
  names = sorted({n for key in keys for n in axes[key] if n is not None})
  symbols = dict(zip(names, jax_export.symbolic_shape(', '.join(names)), strict=True))

  def symbolic(key):
    x = jnp.asarray(batch[key])
    shape = [d if n is None else symbols[n] for n, d in zip(axes[key], x.shape, strict=True)]
    return jax.ShapeDtypeStruct(tuple(shape), x.dtype)

  specs = [symbolic(k) for k in keys]

  def predict(*arrays):
    return model.apply(variables, *task.model_inputs(dict(zip(keys, arrays, strict=True))))

  with native.disabled():  # the portable scan: the CPU kernel is a machine-local custom call
    exported = jax_export.export(jax.jit(predict))(*specs)
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, FILENAME)
  with open(path + '.tmp', 'wb') as f:
    f.write(exported.serialize())
  os.replace(path + '.tmp', path)
  signature = {
    'file': FILENAME,
    'inputs': {k: str(a) for k, a in zip(keys, exported.in_avals, strict=True)},
    'outputs': [str(a) for a in exported.out_avals],
    'platforms': list(exported.platforms),
  }
  tmp = os.path.join(directory, 'signature.json.tmp')
  with open(tmp, 'w') as f:
    json.dump(signature, f, indent=2)
  os.replace(tmp, os.path.join(directory, 'signature.json'))
  return exported


def load(directory: str):
  """The exported predict function: `fn(*example_batch arrays) -> the model's output`."""
  with open(os.path.join(directory, FILENAME), 'rb') as f:
    exported = jax_export.deserialize(bytearray(f.read()))
  return exported.call
