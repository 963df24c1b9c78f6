"""A linear map and its hand-written transpose, as two JAX primitives.

A `jax.custom_vjp` function has a hand-written backward pass but no forward mode (JAX
refuses `jax.jvp` through it). A `jax.custom_jvp` function has forward mode, and reverse
mode then transposes whatever its rule computed for the tangent. To keep a hand-written
backward pass there, the rule computes its tangent with `LinearPair.apply`: a primitive,
linear in its `linear` arguments, whose transpose is the other function of the pair.
Reverse mode then runs the hand-written transpose, forward mode the tangent map.
(`jax.custom_derivatives.linear_call` does the same, but cannot be vmapped or
differentiated in its residuals, which ensembles and second-order derivatives need.)

Both primitives:
  * lower to their Python function (`mlir.lower_fun`), so they compile to the same HLO as
    a direct call;
  * are differentiated in every argument through the functions as the `differentiable`
    hook rewrites their static parameters (for a C++ kernel: the same computation as plain
    JAX code, which JAX can differentiate);
  * batch under `jax.vmap` by mapping their function over the leading axes;
  * are each other's transpose in the linear arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import jax
import jax.numpy as jnp
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

# fn(static, residuals, linear) -> tuple of arrays, linear in `linear` (a tuple of arrays).
LinearFn = Callable[[Hashable, object, tuple], tuple]


class LinearPair:
  """`apply` computes `forward(static, residuals, linear)`; its transpose is `transpose`."""

  def __init__(
    self,
    name: str,
    forward: LinearFn,
    transpose: LinearFn,
    differentiable: Callable[[Hashable], Hashable] = lambda static: static,
  ):
    prims = (Primitive(name), Primitive(f'{name}_transpose'))
    for prim, fn, partner in zip(prims, (forward, transpose), prims[::-1], strict=True):
      prim.multiple_results = True
      run = self._runner(fn)
      prim.def_impl(jax.jit(run, static_argnames=('static', 'tree', 'batch', 'out_avals')))
      prim.def_abstract_eval(lambda *avals, out_avals, **params: list(out_avals))
      mlir.register_lowering(prim, mlir.lower_fun(run, multiple_results=True))
      ad.primitive_jvps[prim] = self._jvp_rule(run, differentiable)
      ad.primitive_transposes[prim] = self._transpose_rule(prim, partner)
      batching.primitive_batchers[prim] = self._batch_rule(prim)
    self._forward = prims[0]

  def apply(self, static: Hashable, residuals, linear: tuple, out_like: tuple) -> tuple:
    """forward(static, residuals, linear), whose outputs have the shapes and dtypes of
    `out_like` (arrays or `jax.ShapeDtypeStruct`s); `static` is hashable."""
    flat, tree = jax.tree.flatten(residuals)
    out_avals = tuple(_aval(o) for o in out_like)
    out = self._forward.bind(*flat, *linear, static=static, tree=tree, batch=0, out_avals=out_avals)
    return tuple(out)

  # Every primitive parameter: static (for the functions), tree (of the residuals, whose
  # leaves come first among the operands), batch (leading vmapped axes of every operand)
  # and out_avals (the outputs' shapes and dtypes: what abstract evaluation returns, so
  # that tracing never runs a function it does not lower).

  @staticmethod
  def _runner(fn: LinearFn) -> Callable:
    def run(*args, static, tree, batch, out_avals):
      del out_avals
      n = tree.num_leaves

      def call(*flat):
        return list(fn(static, jax.tree.unflatten(tree, flat[:n]), tuple(flat[n:])))

      for _ in range(batch):
        call = jax.vmap(call)
      return call(*args)

    return run

  @staticmethod
  def _jvp_rule(run, differentiable) -> Callable:
    def jvp(primals, tangents, *, static, tree, batch, out_avals):
      tangents = [ad.instantiate_zeros(t) for t in tangents]

      def f(*args):
        return run(*args, static=differentiable(static), tree=tree, batch=batch, out_avals=None)

      return jax.jvp(f, list(primals), tangents)

    return jvp

  @staticmethod
  def _transpose_rule(prim, partner) -> Callable:
    def transpose(cts, *args, static, tree, batch, out_avals):
      n = tree.num_leaves
      residuals, linear = args[:n], args[n:]
      if any(ad.is_undefined_primal(r) for r in residuals):
        raise ValueError(f'{prim.name} is linear in its linear arguments only.')
      cts = [jnp.zeros(c.aval.shape, c.aval.dtype) if type(c) is ad.Zero else c for c in cts]
      avals = tuple(x.aval if ad.is_undefined_primal(x) else _aval(x) for x in linear)
      out = partner.bind(*residuals, *cts, static=static, tree=tree, batch=batch, out_avals=avals)
      # A linear argument that is a known value (a zero tangent) gets no cotangent.
      return [None] * n + [
        o if ad.is_undefined_primal(x) else None for o, x in zip(out, linear, strict=True)
      ]

    return transpose

  @staticmethod
  def _batch_rule(prim) -> Callable:
    def batch_rule(args, dims, *, static, tree, batch, out_avals):
      size = next(a.shape[d] for a, d in zip(args, dims, strict=True) if d is not None)
      args = [
        jnp.broadcast_to(a, (size, *a.shape)) if d is None else jnp.moveaxis(a, d, 0)
        for a, d in zip(args, dims, strict=True)
      ]
      out_avals = tuple(a.update(shape=(size, *a.shape)) for a in out_avals)
      out = prim.bind(*args, static=static, tree=tree, batch=batch + 1, out_avals=out_avals)
      return out, [0] * len(out)

    return batch_rule


def _aval(x):
  """The type of a tangent like `x` (an array, tracer or `jax.ShapeDtypeStruct`), as JAX
  gives it: shape, dtype, sharding and, inside `jax.shard_map`, the mesh axes it varies
  over."""
  return jax.typeof(x).update(weak_type=False)
