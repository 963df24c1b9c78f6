"""Optimisers: Adam, AdamW or SGD with momentum, learning-rate schedules, clipping.

`OptimizerSpec` holds the typed settings (the app builds it from the config's `optim`
block, `app.optimizer_spec`); `make_optimizer` turns it into an optax transformation.

Weight decay is decoupled for AdamW (`optax.adamw`) and an L2 term added to the gradient
for SGD (`optax.add_decayed_weights` before `optax.sgd`, the classic coupled form).

The optimiser is built with `optax.inject_hyperparams`, so `opt_state.hyperparams` holds
`learning_rate` as an array that can be read or set per model (ensembles vmap over it).
With a schedule, the injected `learning_rate` is the schedule's *peak*: the rate used at
step `n` is `learning_rate * schedule_scale(n)`. Setting the hyperparameter therefore
rescales the whole schedule without rebuilding the optimiser.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import optax

SCHEDULES = ('constant', 'warmup_cosine', 'step')
DEFAULT_MOMENTUM = 0.9  # optim.name=sgd without optim.momentum
OPTIMIZERS = ('adam', 'adamw', 'sgd')


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
  """What `make_optimizer` builds.

  Attributes:
    name: 'adam', 'adamw' or 'sgd'.
    learning_rate: the constant rate, or a schedule's peak.
    schedule: 'constant', 'warmup_cosine' (to 0 at the run's end) or 'step'.
    warmup_steps: warmup_cosine: linear warmup from 0 over these steps.
    decay_every_steps: step: multiply the rate by `decay_rate` every this many steps.
    decay_rate: step: the factor.
    weight_decay: adamw (decoupled) or sgd (L2 on the gradient); 0 for adam.
    grad_clip_norm: clip gradients to this global norm; 0: no clipping.
    momentum: sgd only; 0: plain SGD.
  """

  name: str = 'adam'
  learning_rate: float = 1e-3
  schedule: str = 'constant'
  warmup_steps: int = 0
  decay_every_steps: int = 0
  decay_rate: float = 0.1
  weight_decay: float = 0.0
  grad_clip_norm: float = 0.0
  momentum: float = DEFAULT_MOMENTUM


def schedule_scale(spec: OptimizerSpec, total_steps: int | None) -> Callable | None:
  """The schedule's shape as a multiplier of the peak rate: step -> float in [0, 1].

  Args:
    spec: the optimiser's settings (`schedule`, `warmup_steps`, `decay_every_steps`,
      `decay_rate`).
    total_steps: optimiser steps in the whole run; `warmup_cosine` decays to 0 there.

  Returns:
    None for 'constant' (the injected rate is used as is), else a function of the step.
  """
  name = spec.schedule
  if name not in SCHEDULES:
    raise ValueError(f'Unknown optim.schedule {name!r}; known: {list(SCHEDULES)}.')
  if name == 'constant':
    return None
  if name == 'warmup_cosine':
    if not total_steps:
      raise ValueError('optim.schedule=warmup_cosine needs the run length (total steps).')
    warmup = min(spec.warmup_steps, total_steps)
    return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=1.0, warmup_steps=warmup, decay_steps=max(total_steps, 1)
    )
  every = spec.decay_every_steps
  if every <= 0:
    raise ValueError(f'optim.schedule=step needs optim.decay_every_steps > 0; got {every}.')
  return optax.exponential_decay(
    1.0, transition_steps=every, decay_rate=spec.decay_rate, staircase=True
  )


def make_optimizer(
  spec: OptimizerSpec, total_steps: int | None = None, inject_weight_decay: bool = False
) -> optax.GradientTransformation:
  """Adam, AdamW or SGD with the schedule and clipping of `spec`, peak rate injectable.

  Args:
    spec: the optimiser's settings.
    total_steps: optimiser steps in the run (needed by 'warmup_cosine' only).
    inject_weight_decay: use AdamW even for `name='adam'` (a decay of 0 is exactly Adam),
      so that `weight_decay` is an injected hyperparameter too; ensembles set it per
      member.

  Returns:
    A GradientTransformation whose state has `hyperparams['learning_rate']` and, for
    AdamW and SGD, `hyperparams['weight_decay']`.

  Example:
    >>> tx = make_optimizer(OptimizerSpec(name='sgd', learning_rate=0.1, momentum=0.0))
  """
  if spec.name not in OPTIMIZERS:
    raise ValueError(f'Unknown optim.name {spec.name!r}; known: {list(OPTIMIZERS)}.')
  scale = schedule_scale(spec, total_steps)
  weight_decay = spec.weight_decay
  if weight_decay and spec.name == 'adam':
    raise ValueError(f'optim.weight_decay={weight_decay} needs optim.name=adamw or sgd.')
  clip = spec.grad_clip_norm
  sgd = spec.name == 'sgd'
  momentum = spec.momentum or None
  decays = spec.name != 'adam' or inject_weight_decay

  def build(learning_rate, weight_decay=0.0):
    lr = learning_rate if scale is None else (lambda count: learning_rate * scale(count))
    if sgd:
      opt = optax.chain(optax.add_decayed_weights(weight_decay), optax.sgd(lr, momentum))
    elif decays:
      opt = optax.adamw(lr, weight_decay=weight_decay)
    else:
      opt = optax.adam(lr)
    if clip > 0:
      opt = optax.chain(optax.clip_by_global_norm(clip), opt)
    return opt

  hparams = {'learning_rate': spec.learning_rate}
  if decays:
    hparams['weight_decay'] = weight_decay
  return optax.inject_hyperparams(build)(**hparams)


def learning_rate_at(spec: OptimizerSpec, total_steps: int | None, peak, step: int) -> float | list:
  """The rate `make_optimizer` uses at `step`, for logging (host side).

  `peak` is a scalar, or float32[N] for an ensemble's members (then a list is returned).
  """
  scale = schedule_scale(spec, total_steps)
  rate = np.asarray(peak, np.float64) * (1.0 if scale is None else float(scale(jnp.asarray(step))))
  return float(rate) if rate.ndim == 0 else rate.tolist()
