"""The PyTorch tutorial trained side by side in PyTorch and in bilstm_jax."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bilstm_jax import app, interop, models
from bilstm_jax.training import optim
from bilstm_jax.training import steps as train_lib
from configs import default
from tests.utils import regression_task, synthetic

torch = pytest.importorskip('torch')


class TutorialModel(torch.nn.Module):
  """The tutorial's model: nn.LSTM(5, 8, bidirectional, batch_first) + Linear(16 -> 1)."""

  def __init__(self, num_layers=1):
    super().__init__()
    self.lstm = torch.nn.LSTM(5, 8, num_layers, batch_first=True, bidirectional=True)
    self.fc = torch.nn.Linear(16, 1)

  def forward(self, x):
    out, _ = self.lstm(x)
    return self.fc(out)


def _torch_losses(model, x, y, steps, lr):
  opt = torch.optim.Adam(model.parameters(), lr=lr)
  crit = torch.nn.MSELoss()
  losses = []
  for _ in range(steps):
    opt.zero_grad()
    loss = crit(model(x), y)
    loss.backward()
    opt.step()
    losses.append(loss.item())
  return losses


@pytest.mark.parametrize('num_layers', [1, 2])
def test_fifty_adam_steps_match_pytorch(num_layers):
  cfg = default.get_config()
  cfg.data.task = 'seed_noise'
  batch = synthetic(cfg, 'train')  # [16, 10, 5] and [16, 10, 1]
  torch.manual_seed(0)
  tmodel = TutorialModel(num_layers)
  # Carry the PyTorch checkpoint over before training it, so both start from it.
  params = interop.regressor_from_torch(tmodel.state_dict())

  x, y = torch.tensor(batch['inputs']), torch.tensor(batch['targets'])
  torch_losses = _torch_losses(tmodel, x, y, steps=50, lr=cfg.optim.learning_rate)

  model = models.BiLSTMRegressor(hidden_size=8, num_layers=num_layers)
  tx = optim.make_optimizer(app.optimizer_spec(cfg.optim))
  state = train_lib.TrainState.create(
    apply_fn=model.apply, params=jax.tree.map(jnp.asarray, params), tx=tx
  )
  step = jax.jit(functools.partial(train_lib.train_step, task=regression_task()))
  jax_losses = []
  for _ in range(50):
    state, metrics = step(state, batch, jax.random.key(0))
    jax_losses.append(float(metrics['loss']))

  np.testing.assert_allclose(jax_losses, torch_losses, rtol=1e-4)
  assert jax_losses[-1] < 0.8 * jax_losses[0]  # it trains: the tutorial's loss falls
  # And the trained JAX weights go back into the PyTorch model with the same outputs.
  tmodel.load_state_dict(interop.regressor_to_torch(state.params))
  with torch.no_grad():
    back = tmodel(x).numpy()
  ours = state.apply_fn({'params': state.params}, batch['inputs'], batch['lengths'])
  np.testing.assert_allclose(np.asarray(ours), back, atol=1e-5)
