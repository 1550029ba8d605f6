"""The optax staleness wrapper equals the engine's delayed gradient descent."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp
import optax

from rpd.engine import run
from rpd.optax_stale import delayed
from rpd.problems import get_problem
from rpd.rules import get_rule


@pytest.mark.parametrize("tau", [0, 1, 4])
def test_delayed_sgd_equals_engine_constant_rule_S1(tau):
  gamma, K = 0.2, 30
  prob = get_problem("quadratic", 1, d=6, noise=0.0, seed=4)
  tx = delayed(optax.sgd(gamma), tau)
  x = prob.init(None)
  state = tx.init(x)

  @jax.jit
  def step(x, state):
    u, state = tx.update(prob.full_grad(x), state, x)
    return optax.apply_updates(x, u), state

  for _ in range(K):
    x, state = step(x, state)
  res = run(prob, get_rule(f"constant:{tau}", 1), gamma=gamma, K=K, key=jax.random.key(0))
  np.testing.assert_allclose(np.asarray(x), res.x_SxD, rtol=0, atol=1e-14)


def test_pytree_params_and_state_shapes_fixed():
  params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
  tx = delayed(optax.adam(1e-2), 3)
  state = tx.init(params)
  grads = jax.tree.map(jnp.ones_like, params)
  u, new_state = jax.jit(tx.update)(grads, state, params)
  assert jax.tree.structure(new_state) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(new_state)):
    assert a.shape == b.shape and a.dtype == b.dtype


def test_bad_delay():
  with pytest.raises(ValueError, match="delay must be an integer >= 0, got -1"):
    delayed(optax.sgd(0.1), -1)
