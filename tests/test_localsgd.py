"""LocalSGD baseline: exact equivalences, determinism, vmap = loop, divergence."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from rpd.baselines import LocalSGD, get_baseline
from rpd.problems.base import Problem, merge_blocks


@struct.dataclass
class _NoisyQuadratic(Problem):
  """f(x) = 1/2 sum_i a_i x_i^2 - b'x; g = grad f + sigma * xi (test fixture)."""

  a: jax.Array
  b: jax.Array
  sigma: float = struct.field(pytree_node=False, default=0.0)
  S: int = struct.field(pytree_node=False, default=1)
  block_sizes: tuple = struct.field(pytree_node=False, default=(1,))
  name: str = struct.field(pytree_node=False, default="testquad")
  L: float | None = struct.field(pytree_node=False, default=None)
  f_star: float | None = struct.field(pytree_node=False, default=None)

  def init(self, key):
    return jnp.zeros((self.S, self.D))

  def sample(self, key):
    return jax.random.normal(key, (self.d,))

  def full_loss(self, x_SxD):
    x = merge_blocks(x_SxD, self.block_sizes)
    return 0.5 * jnp.sum(self.a * x * x) - self.b @ x

  def loss(self, x_SxD, xi):
    return self.full_loss(x_SxD) + self.sigma * merge_blocks(x_SxD, self.block_sizes) @ xi


def _quad(S=4, d=10, sigma=0.5):
  rng = np.random.default_rng(0)
  bs = tuple(d // S + (1 if s < d % S else 0) for s in range(S))
  return _NoisyQuadratic(a=jnp.asarray(rng.uniform(0.1, 1.0, d)),
                         b=jnp.asarray(rng.standard_normal(d)), sigma=sigma, S=S,
                         block_sizes=bs)


def test_h1_is_minibatch_sgd_with_W_fold_batch():
  """H = 1: each round is x <- x - gamma * mean_w g(x; xi_w) with the documented keys."""
  p = _quad()
  key = jax.random.key(3)
  gamma, R = 0.3, 6
  res = LocalSGD(H=1).run(p, gamma=gamma, rounds=R, key=key)
  x = p.init(key)
  for r in range(R):
    keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, r), 0), p.S)
    g = jnp.mean(jnp.stack([p.grad(x, p.sample(k)) for k in keys]), axis=0)
    x = x - gamma * g
  np.testing.assert_allclose(res.x_SxD, x, rtol=1e-12, atol=1e-12)
  assert res.K == R and res.W == p.S


@pytest.mark.parametrize("H", [1, 3, 7])
def test_exact_gradients_give_gradient_descent(H):
  """sigma = 0: replicas never disagree; R rounds = R*H steps of GD, drift 0."""
  p = _quad(sigma=0.0)
  R, gamma = 4, 0.5
  res = LocalSGD(H=H).run(p, gamma=gamma, rounds=R, key=jax.random.key(0), record_every=1)
  x = merge_blocks(p.init(None), p.block_sizes)
  for _ in range(R * H):
    x = x - gamma * (p.a * x - p.b)
  np.testing.assert_allclose(merge_blocks(jnp.asarray(res.x_SxD), p.block_sizes), x, atol=1e-12)
  assert np.all(res.metrics["drift_x_err"] < 1e-20)
  assert list(res.metrics["k"]) == [r * H for r in range(R + 1)]


def test_noise_makes_replicas_drift_and_averaging_helps():
  """With noise and H > 1 the replicas disagree before each average (drift > 0)."""
  p = _quad(sigma=1.0)
  res = LocalSGD(H=5).run(p, gamma=0.2, rounds=10, key=jax.random.key(1), record_every=1)
  assert np.all(res.metrics["drift_x_err"][1:] > 0)
  assert res.metrics["loss"][-1] < res.metrics["loss"][0]


def test_determinism_and_vmap_equals_loop():
  p = _quad()
  ls = LocalSGD(H=3)
  gammas, seeds = np.array([0.1, 0.3, 0.3]), np.array([0, 0, 5])
  sw = ls.sweep(p, gammas=gammas, seeds=seeds, rounds=4, record_every=2)
  for c in range(3):
    one = ls.run(p, gamma=gammas[c], rounds=4, key=jax.random.key(int(seeds[c])), record_every=2)
    np.testing.assert_allclose(sw.x_SxD[c], one.x_SxD, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sw.metrics["loss"][c], one.metrics["loss"], rtol=1e-12)
  again = ls.run(p, gamma=0.3, rounds=4, key=jax.random.key(5), record_every=2)
  np.testing.assert_array_equal(again.x_SxD, sw.x_SxD[2])
  assert not np.array_equal(sw.x_SxD[1], sw.x_SxD[2])  # other seed, other stream
  # Simulated time: record every 2 rounds of H=3 steps on S=4 workers, F=B=1.
  np.testing.assert_allclose(sw.metrics["time"][0], [0, 2 * 3 * 4 * 2, 4 * 3 * 4 * 2])


def test_divergence_is_flagged_not_raised():
  p = _quad(sigma=0.0)
  sw = LocalSGD(H=2).sweep(p, gammas=np.array([0.5, 50.0]), seeds=np.array([0, 0]),
                           rounds=200, record_every=20)
  assert not sw.diverged[0] and sw.diverged[1]
  assert sw.diverged_at[0] == -1 and 0 < sw.diverged_at[1] < 400
  assert np.isinf(sw.metrics["loss"][1, -1]) and np.isfinite(sw.metrics["loss"][0]).all()


def test_first_record_is_the_objective_at_x0_as_it_is():
  """Record 0 is f(x0) itself, also where it is not finite (a diverged run's later records are
  inf); the run diverges in its first round and reports k = 0."""
  p = _quad(sigma=0.0)
  x0 = np.zeros((p.S, p.D))
  x0[0, 0] = np.nan
  res = LocalSGD(H=2).run(p, gamma=0.1, rounds=4, record_every=2, key=jax.random.key(0), x0=x0)
  assert np.isnan(res.metrics["loss"][0]) and np.isinf(res.metrics["loss"][1:]).all()
  assert res.diverged and res.diverged_at == 0
  ok = LocalSGD(H=2).run(p, gamma=0.1, rounds=4, record_every=2, key=jax.random.key(0))
  assert ok.metrics["loss"][0] == float(p.full_loss(jnp.zeros((p.S, p.D))))


def test_registry_and_bad_input():
  assert get_baseline("localsgd:4").H == 4 and get_baseline("localsgd").H == 1
  with pytest.raises(KeyError, match="unknown baseline"):
    get_baseline("fedavg")
  with pytest.raises(ValueError, match="H >= 1"):
    LocalSGD(H=0)
  with pytest.raises(ValueError, match="multiple"):
    LocalSGD().run(_quad(), gamma=0.1, rounds=5, key=jax.random.key(0), record_every=2)
