"""Checkpoints of a run in `workdir/checkpoints/<step>/`, written with orbax-checkpoint.

Each checkpoint holds three items:
  params: the model parameters (restored alone by evaluate, predict and export);
  train:  optimiser state, step and the dropout rng's key data;
  meta:   JSON: the data-iterator position (next epoch and batch), the running train-loss
          sums, early-stopping state, the dev metrics and the run's config.

Orbax writes a checkpoint into a temporary directory and renames it when complete, so a
process killed at any moment (also mid-save) leaves only complete checkpoints; the
partial directory is deleted when the manager is next opened. The two newest checkpoints
are always kept (to resume from, and one to fall back to), plus the best `keep_best` by
the chosen dev metric.

Damage after the fact (a truncated or edited file, a deleted item, unreadable metadata) is
caught when a checkpoint is opened or restored: each checkpoint gets a manifest of its
files' sizes and SHA-256 digests (`integrity.MANIFEST`, written atomically once orbax has committed
it), so even a changed byte that still deserialises is found. A damaged checkpoint is
skipped for the next one (newest first, or best first), with a warning on stderr naming
it; a training run moves it to `workdir/checkpoints_damaged/` so its step can be saved
again. A checkpoint without a manifest (a run killed between the commit and the manifest,
or one written before manifests) is checked by loading it.

A save that fails for lack of space or permission raises a CheckpointError naming the
checkpoint, the reason and the last good checkpoint (left as it was).
"""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from bilstm_jax import faults
from bilstm_jax.errors import CheckpointError, RunError
from bilstm_jax.training import integrity, orbax_io

# Where a training run moves the damaged checkpoints it finds (beside checkpoints/).
DAMAGED = 'checkpoints_damaged'


class Checkpoints:
  """The orbax CheckpointManager of one workdir.

  Args:
    workdir: the run directory; checkpoints go to `workdir/checkpoints/`.
    metric: the dev metric that ranks checkpoints (a key of the metrics saved with each).
    mode: 'min' or 'max': which direction of `metric` is better.
    keep_best: how many of the best checkpoints to keep, >= 1 (`app.validate` checks the
      config's); the newest is kept as well.
    read_only: open existing checkpoints without creating or deleting anything.
  """

  def __init__(
    self,
    workdir: str,
    metric: str = 'dev_loss',
    mode: str = 'min',
    keep_best: int = 3,
    read_only: bool = False,
  ):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    self.workdir, self.read_only = os.path.abspath(workdir), read_only
    self.metric, self.mode = metric, mode
    if mode not in ('min', 'max'):
      raise ValueError(f"checkpoint.metric_mode must be 'min' or 'max'; got {mode!r}.")

    def score(metrics):
      return metrics[metric]

    options = ocp.CheckpointManagerOptions(
      best_fn=score,
      best_mode=mode,
      preservation_policy=policies.AnyPreservationPolicy(
        [
          policies.LatestN(n=2),  # the newest, and one to fall back to if it is damaged
          policies.BestN(
            get_metric_fn=score,
            reverse=mode == 'min',
            n=keep_best,
            keep_checkpoints_without_metrics=False,
          ),
        ]
      ),
      enable_async_checkpointing=False,
      cleanup_tmp_directories=not read_only,
      create=not read_only,
      read_only=read_only,
      save_interval_steps=0 if read_only else 1,  # orbax warns when it has to set this
    )
    # Orbax reads every checkpoint's metrics file on opening, and one it cannot parse
    # fails the whole manager: set such checkpoints aside first.
    self._hidden = set()
    for step, reason in integrity.unreadable_metrics(self.directory).items():
      self._set_aside(step, reason)
    if self._hidden:
      options.step_name_format = orbax_io.Hiding(self._hidden)
    self.manager = orbax_io.open_manager(self.directory, options)

  def path(self, step: int) -> str:
    """The directory of checkpoint `step`."""
    return os.path.join(self.directory, str(step))

  def latest_step(self) -> int | None:
    """The newest checkpoint's step, or None when there is none."""
    return self.manager.latest_step()

  def best_step(self) -> int | None:
    """The step of the best checkpoint by the ranking metric, or None when there is none."""
    return self.manager.best_step()

  def save(self, state, rng: jax.Array, meta: dict, metrics: dict, step: int | None = None):
    """Saves params, optimiser state, step, rng and `meta`; ranks it by `metrics`.

    `step` numbers the checkpoint; default `state.step` (an ensemble's stacked state has
    one per member, so its loop passes the host's count).
    """
    step = int(state.step) if step is None else step
    faults.point('save')
    params = state.params
    train = _train_item(state, rng)
    # Batch statistics and the like: an item of their own, so inference restores them
    # with the params and without the optimiser state.
    model_state = getattr(state, 'model_state', None) or {}
    values = (params, train, model_state)
    if all(getattr(a, 'is_fully_addressable', True) for a in jax.tree.leaves(values)):
      # This process holds every value: hand orbax numpy copies, cheaper than its
      # per-array path for jax.Arrays (replica slices, transfers; benchmarks/NOTES.md).
      # Restoring gives jax.Arrays placed like the target.
      params, train, model_state = jax.device_get(values)
    items = {'model_state': ocp.args.StandardSave(model_state)} if model_state else {}
    previous = self.latest_step()
    try:
      self.manager.save(
        step,
        args=ocp.args.Composite(
          params=ocp.args.StandardSave(params),
          train=ocp.args.StandardSave(train),
          meta=orbax_io.MetaSave(meta),
          **items,
        ),
        metrics={k: float(v) for k, v in metrics.items()},
        force=True,
      )
      self.manager.wait_until_finished()
      if jax.process_index() == 0:
        integrity.write_manifest(self.path(step))
    except Exception as e:
      reason = integrity.storage_reason(e)
      if reason is None:
        raise
      # Nothing of this step is left as a checkpoint, not even a committed one whose
      # manifest could not be written.
      self._remove_partial(step)
      kept = 'none was saved yet' if previous is None else f'{self.path(previous)}, kept'
      raise CheckpointError(
        f'{reason} while saving checkpoint {step} to {self.path(step)} (the last good '
        f'checkpoint: {kept}). Free space or fix the permissions of {self.directory}, '
        'then rerun the same command to resume.'
      ) from e

  def restore_good(self, state, rng: jax.Array):
    """Restores the newest checkpoint that is not damaged (`restore`, skipping damage).

    Returns:
      (step, state, rng, meta), or None if there is no checkpoint.

    Raises:
      CheckpointError: every checkpoint is damaged, or one holds another model shape.
    """
    found = self._first_good('latest', lambda step: self.restore(step, state, rng))
    return None if found is None else (found[0], *found[1])

  def restore_params_good(self, which: str, params_like, model_state_like=None):
    """The params (and model_state) of the best (`which='best'`) or newest undamaged
    checkpoint; `model_state_like` gives the model_state's structure (None: none).

    Returns:
      (step, params, model_state), or None if there is no checkpoint.
    """

    def restore(step):
      like = model_state_like or {}
      return self.restore_params(step, params_like), self.restore_model_state(step, like)

    found = self._first_good(which, restore)
    return None if found is None else (found[0], *found[1])

  def _candidates(self, which: str) -> list[int]:
    """Steps in the order to try: newest first, or best first (by `metric`, then newest)."""
    steps = sorted(self.manager.all_steps(), reverse=True)
    if which == 'latest':
      return steps
    sign = 1.0 if self.mode == 'min' else -1.0

    def key(step):
      value = (self.manager.metrics(step) or {}).get(self.metric)
      return (value is None, sign * value if value is not None else 0.0)

    return sorted(steps, key=key)  # stable: ties stay newest first

  def _first_good(self, which: str, restore):
    damaged = []
    try:
      for step in self._candidates(which):
        try:
          integrity.verify(self.path(step))
          return step, restore(step)
        except RunError:  # another model shape or config: not damage
          raise
        except _DAMAGE as e:
          damaged.append(step)
          self._set_aside(step, integrity.short(e))
    finally:
      if damaged and not self.read_only:
        self.manager.reload()
    if not damaged:
      return None
    if self.read_only:
      where, then = '', 'Train again (training moves damaged checkpoints aside)'
    else:
      where = f'; moved to {os.path.join(self.workdir, DAMAGED)}'
      then = 'Rerun to train from the start'
    raise CheckpointError(
      f'No usable checkpoint in {self.workdir}: every one is damaged '
      f'(steps {", ".join(map(str, damaged))}{where}). {then}, or use another --workdir.'
    )

  def _set_aside(self, step: int, reason: str) -> None:
    """Warns about damaged checkpoint `step`; hides it, or (training) moves it aside.

    Of several training processes, process 0 moves it; the others only skip it.
    """
    path = self.path(step)
    if self.read_only or jax.process_index() != 0:
      self._hidden.add(step)
      integrity.warn(f'checkpoint {path} is damaged ({reason}); skipping it.')
      return
    dest = os.path.join(self.workdir, DAMAGED, str(step))
    n = 1
    while os.path.exists(dest):
      dest, n = os.path.join(self.workdir, DAMAGED, f'{step}.{n}'), n + 1
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    os.replace(path, dest)
    integrity.warn(f'checkpoint {path} is damaged ({reason}); moved it to {dest} and skipped it.')

  def _remove_partial(self, step: int) -> None:
    # Orbax's temporary copy is left to orbax (its other items may still be writing
    # into it; the next open deletes it); a committed copy is removed here.
    path = self.path(step)
    if os.path.isdir(path):
      shutil.rmtree(path, ignore_errors=True)
    self.manager.reload()

  def read_meta(self, step: int) -> dict:
    """The `meta` dict saved with checkpoint `step` (progress, metrics, config)."""
    return self.manager.restore(step, args=ocp.args.Composite(meta=orbax_io.MetaRestore()))['meta']

  def restore_params(self, step: int, params_like):
    """Restores the params of checkpoint `step` into the structure of `params_like`.

    Raises:
      CheckpointError: when the checkpoint's parameter names or shapes differ from
        `params_like` (a checkpoint of another model shape), naming the first few.
    """
    self._check_shapes(step, params_like)
    target = jax.tree.map(orbax_io.restore_target, params_like)
    out = self.manager.restore(
      step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target))
    )
    return out['params']

  def restore_model_state(self, step: int, model_state_like: dict) -> dict:
    """The model's other collections (e.g. 'batch_stats') in checkpoint `step`.

    `model_state_like` gives the structure; empty (most models) restores nothing.
    """
    if not model_state_like:
      return model_state_like
    target = jax.tree.map(orbax_io.restore_target, model_state_like)
    out = self.manager.restore(
      step, args=ocp.args.Composite(model_state=ocp.args.StandardRestore(target))
    )
    return out['model_state']

  def restore(self, step: int, state, rng: jax.Array):
    """Restores a full TrainState, the rng and the meta dict of checkpoint `step`.

    `state` and `rng` give the structure, shapes and dtypes (a freshly built state).
    """
    params = self.restore_params(step, state.params)
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, _train_item(state, rng))
    out = self.manager.restore(
      step,
      args=ocp.args.Composite(train=ocp.args.StandardRestore(target), meta=orbax_io.MetaRestore()),
    )
    train = out['train']
    state = state.replace(
      params=params,
      opt_state=train['opt_state'],
      step=train['step'],
      model_state=self.restore_model_state(step, state.model_state),
    )
    return state, jax.random.wrap_key_data(train['rng']), out['meta']

  def _check_shapes(self, step: int, params_like) -> None:
    stored = self.manager.item_metadata(step)['params']
    have = _shapes(stored)
    want = _shapes(params_like)
    if have == want:
      return
    problems = []
    for name in sorted(set(have) | set(want)):
      if have.get(name) != want.get(name):
        problems.append(
          f'{name}: checkpoint {have.get(name, "missing")}, this config {want.get(name, "missing")}'
        )
    raise CheckpointError(
      f'Checkpoint {self.path(step)} holds parameters of another model shape '
      f'({len(problems)} differ; e.g. ' + '; '.join(problems[:3]) + '). Use the config it '
      'was trained with (see config.json next to checkpoints/) or another --workdir.'
    )

  def close(self) -> None:
    """Waits for pending saves to finish and releases the checkpoint manager."""
    self.manager.close()


# What reading a damaged checkpoint raises: the manifest's difference, a missing file or
# item, unparseable JSON, tensorstore's errors (ValueErrors). Anything else is a bug and
# keeps its traceback (it must not set good checkpoints aside).
_DAMAGE = (integrity.Damaged, OSError, ValueError, KeyError)


def _train_item(state, rng: jax.Array) -> dict:
  """What a checkpoint's `train` item holds: all of the state but params and model_state."""
  return {'opt_state': state.opt_state, 'step': state.step, 'rng': jax.random.key_data(rng)}


def _shapes(tree) -> dict[str, tuple]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {
    jax.tree_util.keystr(p): tuple(np.shape(x) if not hasattr(x, 'shape') else x.shape)
    for p, x in leaves
  }
