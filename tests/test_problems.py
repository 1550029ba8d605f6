"""Problems: exact gradients, constants L and f*, noise variance, files, padding."""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from rpd.problems import PROBLEMS, get_problem


@pytest.mark.parametrize("spec,opts", [("quadratic", dict(d=10, noise=0.0)),
                                       ("quadratic", dict(d=4096, diagonal=True)),
                                       ("logistic", dict(n=50, d=10, batch=50))])
@pytest.mark.parametrize("S", [1, 3, 4])
def test_gradients_and_padding(spec, opts, S):
  prob = get_problem(spec, S, **opts)
  x = prob.init(jax.random.key(0)) + 0.1 * jax.random.normal(jax.random.key(1),
                                                             (prob.S, prob.D))
  x = x * (jnp.arange(prob.D)[None, :] < jnp.asarray(prob.block_sizes)[:, None])
  g_auto = jax.grad(prob.full_loss)(x)
  np.testing.assert_allclose(prob.full_grad(x), g_auto, rtol=1e-10, atol=1e-12)
  batch = prob.sample(jax.random.key(2))
  np.testing.assert_allclose(prob.grad(x, batch), jax.grad(prob.loss)(x, batch), rtol=1e-10,
                             atol=1e-12)
  for s, n in enumerate(prob.block_sizes):  # padding never gets a gradient
    assert np.all(np.asarray(prob.full_grad(x))[s, n:] == 0)


def test_quadratic_constants():
  prob = get_problem("quadratic", 4, d=12, L=3.0, mu=0.1, seed=3)
  A = np.asarray(prob.A)
  lam = np.linalg.eigvalsh(A)
  assert lam.max() == pytest.approx(3.0) and lam.min() == pytest.approx(0.1)
  assert prob.L == pytest.approx(3.0)
  x_star = np.linalg.solve(A, np.asarray(prob.b))
  from rpd.problems import split_blocks
  f_at = prob.full_loss(split_blocks(jnp.asarray(x_star), prob.block_sizes))
  assert float(f_at) == pytest.approx(prob.f_star, rel=1e-10)


def test_quadratic_noise_variance_is_sigma2_d():
  prob = get_problem("quadratic", 2, d=50, noise=0.7)
  x = prob.init(None)
  keys = jax.random.split(jax.random.key(0), 4000)
  gs = jax.vmap(lambda k: prob.grad(x, prob.sample(k)))(keys)
  var = float(jnp.mean(jnp.sum((gs - prob.full_grad(x)) ** 2, axis=(1, 2))))
  assert prob.sigma2 == pytest.approx(0.49 * 50)
  assert var == pytest.approx(prob.sigma2, rel=0.03)


def test_logistic_L_bounds_the_hessian():
  prob = get_problem("logistic", 2, n=200, d=8, seed=1)
  rng = np.random.default_rng(0)
  for _ in range(5):
    x = jnp.asarray(rng.standard_normal((2, 4)))
    H = jax.hessian(lambda v: prob.full_loss(v.reshape(2, 4)))(x.reshape(-1))
    assert np.linalg.eigvalsh(np.asarray(H)).max() <= prob.L + 1e-12


def test_minibatch_gradient_is_unbiased():
  prob = get_problem("logistic", 2, n=40, d=6, batch=5, seed=2)
  x = jnp.full((2, 3), 0.3)
  keys = jax.random.split(jax.random.key(0), 20000)
  g = jax.vmap(lambda k: prob.grad(x, prob.sample(k)))(keys).mean(0)
  np.testing.assert_allclose(g, prob.full_grad(x), atol=5e-3)


def test_npz_files(tmp_path):
  rng = np.random.default_rng(0)
  M = rng.standard_normal((6, 6))
  A = M @ M.T + np.eye(6)
  np.savez(tmp_path / "q.npz", A=A, b=np.ones(6))
  q = get_problem(f"quadratic:{tmp_path / 'q.npz'}", 3, noise=0.0)
  assert q.L == pytest.approx(np.linalg.eigvalsh(A).max())
  assert q.f_star == pytest.approx(-0.5 * np.ones(6) @ np.linalg.solve(A, np.ones(6)))
  X = rng.standard_normal((30, 4))
  np.savez(tmp_path / "l01.npz", X=X, y=(X[:, 0] > 0).astype(int))
  np.savez(tmp_path / "lpm.npz", X=X, y=np.where(X[:, 0] > 0, 1, -1))
  a = get_problem(f"logistic:{tmp_path / 'l01.npz'}", 2)
  b = get_problem(f"logistic:{tmp_path / 'lpm.npz'}", 2)
  np.testing.assert_array_equal(a.y, b.y)


@pytest.mark.parametrize("content,match", [
    (dict(A=np.eye(3)), "needs arrays named A and b"),
    (dict(A=np.eye(3), b=np.ones(4)), "A must be d x d and b of length d"),
    (dict(A=np.array([[1.0, 2.0], [0.0, 1.0]]), b=np.ones(2)), "A must be symmetric"),
])
def test_bad_quadratic_npz(tmp_path, content, match):
  np.savez(tmp_path / "bad.npz", **content)
  with pytest.raises(ValueError, match=match):
    get_problem(f"quadratic:{tmp_path / 'bad.npz'}", 1)


def test_bad_files(tmp_path):
  (tmp_path / "junk.npz").write_text("not a zip")
  with pytest.raises(ValueError, match="cannot read"):
    get_problem(f"quadratic:{tmp_path / 'junk.npz'}", 1)
  np.savez(tmp_path / "lab.npz", X=np.ones((3, 2)), y=np.array([0, 1, 2]))
  with pytest.raises(ValueError, match="labels must be in"):
    get_problem(f"logistic:{tmp_path / 'lab.npz'}", 1)
  with pytest.raises(ValueError, match="need 1 <= S <= d"):
    get_problem("quadratic", 9, d=8)
  with pytest.raises(ValueError, match="unknown problem"):
    get_problem("cubic", 2)


def test_breast_cancer_bundled_dataset():
  # scikit-learn is in the dev extra, so this runs in CI (the data set ships inside it).
  prob = get_problem("logistic:breast_cancer", 4, batch=32)
  assert prob.X.shape == (569, 31) and prob.d == 31
  assert set(np.unique(np.asarray(prob.y)).tolist()) == {-1.0, 1.0}


def test_registry_names():
  assert {"quadratic", "logistic"} <= set(PROBLEMS)
