"""Speech features as model steps: k frames stacked per step, padding into one array.

Plain numpy; knows nothing about JAX or Flax.
"""

from __future__ import annotations

import numpy as np


def pad_features(feats: list[np.ndarray], dims: int) -> tuple[np.ndarray, np.ndarray]:
  """float32[frames_i, dims] each -> (inputs float32[n, max_frames, dims], lengths int32[n])."""
  lengths = np.array([len(f) for f in feats], np.int32)
  inputs = np.zeros((len(feats), int(lengths.max(initial=1)), dims), np.float32)
  for i, f in enumerate(feats):
    inputs[i, : len(f)] = f
  return inputs, lengths


def pad_like(feats: list[np.ndarray], like: dict) -> np.ndarray:
  """float32[steps_i, dims] each -> inputs shaped as `like['inputs']`, whose `lengths` the
  features must have (an epoch's augmented set keeps the clean set's shapes)."""
  lengths = np.array([len(f) for f in feats], np.int32)
  if not np.array_equal(lengths, like['lengths']):
    raise ValueError(
      f'{len(feats)} examples of lengths {lengths.tolist()[:4]}... do not have the lengths '
      f'of the {len(like["lengths"])} in the set ({like["lengths"].tolist()[:4]}...).'
    )
  inputs = np.zeros_like(like['inputs'])
  for i, f in enumerate(feats):
    inputs[i, : len(f)] = f
  return inputs


def stack_frames(features: np.ndarray, k: int) -> np.ndarray:
  """float[frames, dims] -> float32[ceil(frames / k), dims * k]: k frames per step, the
  last step completed by repeating the last frame."""
  if k <= 1:
    return features
  steps = -(-len(features) // k)
  idx = np.minimum(np.arange(steps * k), len(features) - 1)
  return features[idx].reshape(steps, k * features.shape[1]).astype(np.float32)


def stack_labels(labels: np.ndarray, k: int) -> np.ndarray:
  """int[frames] -> int32[ceil(frames / k)]: each step takes its middle frame's label."""
  if k <= 1:
    return labels
  steps = -(-len(labels) // k)
  return labels[np.minimum(np.arange(steps) * k + k // 2, len(labels) - 1)].astype(np.int32)
