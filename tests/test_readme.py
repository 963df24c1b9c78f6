"""The README's Python example runs as written and gives what it says (so the README cannot
drift from the code). `tests/test_docs_code.py` runs every block of the README and the docs;
this test also checks the numbers the README's one block states."""

import os
import re

import numpy as np

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'README.md')


def _blocks() -> list[str]:
  with open(README) as f:
    return re.findall(r'^```python\n(.*?)^```', f.read(), re.S | re.M)


def test_the_layer_example_runs_and_gives_what_it_states():
  blocks = _blocks()
  assert len(blocks) == 1, 'a Python block was added to or removed from the README'
  scope = {}
  exec(blocks[0], scope)
  logits, variables = scope['logits'], scope['variables']
  assert logits.shape == (4, 20, 5)  # float32[4, 20, 5], as the comment says
  params = variables['params']
  lstm = params['BiLSTM_0']
  # Bidirectional with 2 layers of 32 by default: the second layer reads 2 * 32 features.
  assert lstm['layer_1']['w_ih'].shape == (2, 64, 4 * 32)
  assert params['Dense_0']['kernel'].shape == (64, 5)
  # y is zero past each length, so the logits there are the Dense bias alone (all of the
  # length-0 sequence, steps 13 on of the second), and differ from it before.
  bias = np.asarray(params['Dense_0']['bias'])
  np.testing.assert_array_equal(np.asarray(logits[3]), np.broadcast_to(bias, (20, 5)))
  np.testing.assert_array_equal(np.asarray(logits[1, 13:]), np.broadcast_to(bias, (7, 5)))
  assert not np.allclose(np.asarray(logits[1, :13]), bias)
