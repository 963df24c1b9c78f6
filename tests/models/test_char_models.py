"""The character models give each word one vector that depends on its characters alone, not
on how wide the batch's character axis is padded (the width is the longest word of the data
read together, so a sentence predicted alone would otherwise score differently)."""

import jax
import numpy as np
import pytest

from bilstm_jax.models.text import CharCNN, CharLSTM


def _words(width: int) -> np.ndarray:
  """int32[1, 3, width]: words of 3 and 5 characters and an empty word, zero-padded."""
  chars = np.zeros((1, 3, width), np.int32)
  chars[0, 0, :3] = [4, 7, 2]
  chars[0, 1, :5] = [9, 1, 5, 5, 3]
  return chars


@pytest.mark.parametrize('model', [CharCNN(12, 6, 4), CharLSTM(12, 6, 4)], ids=['cnn', 'lstm'])
def test_a_words_vector_does_not_depend_on_the_padded_width(model):
  params = model.init(jax.random.key(0), _words(5))
  # The padding id's embedding is trained like any other row; make it large, so a leak shows.
  embed = params['params']['embed']['embedding']
  params['params']['embed']['embedding'] = embed.at[0].set(10.0)
  narrow = np.asarray(model.apply(params, _words(5)))
  wide = np.asarray(model.apply(params, _words(11)))
  np.testing.assert_allclose(wide, narrow, rtol=1e-6, atol=1e-6)
  assert not narrow[0, 2].any()  # an empty word is zero
