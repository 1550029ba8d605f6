"""Character LM problem and its Markov source: entropy rate, layout, split invariance."""
from __future__ import annotations

import functools

import jax
import numpy as np
import pytest

from rpd.problems.base import merge_blocks, split_blocks
from rpd.problems.charlm import make_charlm
from rpd.problems.markov_text import MarkovSource


def test_stationary_distribution_and_entropy_rate():
  """pi is stationary; the exact rate matches a plug-in estimate from a long sample."""
  src = MarkovSource(V=8, order=2, branching=3, seed=1)
  pi, P = src.stationary, src.P
  C = src.n_contexts
  # pi P_context = pi.
  new = np.zeros(C)
  for c in range(C):
    for v in range(src.V):
      new[src.next_context(c, v)] += pi[c] * P[c, v]
  np.testing.assert_allclose(new, pi, atol=1e-13)
  seq = src.sample(200, 2000, seed=7)
  ctx = (seq[:, :-2] * 8 + seq[:, 1:-1]).ravel()
  nxt = seq[:, 2:].ravel()
  counts = np.zeros((C, 8))
  np.add.at(counts, (ctx, nxt), 1)
  cond = counts / counts.sum(1, keepdims=True)
  with np.errstate(divide="ignore", invalid="ignore"):
    plug_in = -np.nansum(counts / counts.sum() * np.log(cond))
  assert plug_in == pytest.approx(src.entropy_rate, abs=0.01)
  # Empirical context frequencies match pi.
  np.testing.assert_allclose(np.bincount(ctx, minlength=C) / ctx.size, pi, atol=0.005)
  assert 0 < src.entropy_rate < np.log(8)


def test_true_conditional_reaches_entropy_rate_on_eval_set():
  """The source's own conditional has eval cross-entropy ~ f_star (within 4 std errors)."""
  p = make_charlm(2, hidden=8, n_chains=4, length=64)
  src = MarkovSource()
  nll = src.true_nll(np.asarray(p.eval_ctx_ExC), np.asarray(p.eval_next_E))
  se = nll.std() / np.sqrt(nll.size)
  assert abs(nll.mean() - p.f_star) < 4 * se
  assert p.f_star == pytest.approx(src.entropy_rate)
  # A fresh random model is far above the entropy rate; uniform guessing is log V.
  x0 = jax.jit(p.init)(jax.random.key(0))
  assert float(jax.jit(p.full_loss)(x0)) > p.f_star + 1.0


# One model configuration for the shape and split tests: its initialisation (jax.jit of the
# flax init of every layer, ~3 s of CPU to compile) and its loss-and-gradient program are
# compiled once per S and shared by both tests (S = 1 and 16 appear in both).
KW = dict(hidden=8, n_chains=4, length=64, n_eval=128)


@functools.lru_cache(maxsize=None)
def charlm(S: int):
  """``(problem, x_SxD = init(key 3), jitted (x, batch) -> (full loss, gradient))`` at ``S``."""
  p = make_charlm(S, **KW)
  x = jax.jit(p.init)(jax.random.key(3))
  return p, x, jax.jit(lambda x, b: (p.full_loss(x), p.grad(x, b)))


@functools.lru_cache(maxsize=None)
def batch():
  """A training batch (the training data do not depend on S)."""
  return charlm(1)[0].sample(jax.random.key(4))


@pytest.mark.parametrize("S", [1, 4, 16])
def test_shapes_padding_and_zero_padding_gradient(S):
  p, x, loss_and_grad = charlm(S)
  assert x.shape == (S, p.D) and sum(p.block_sizes) == p.d
  np.testing.assert_array_equal(p.train_NxT, charlm(1)[0].train_NxT)
  g = loss_and_grad(x, batch())[1]
  assert g.shape == x.shape
  for s, n in enumerate(p.block_sizes):
    assert np.all(np.asarray(x[s, n:]) == 0) and np.all(np.asarray(g[s, n:]) == 0)
    assert np.any(np.asarray(g[s, :n]) != 0)  # every stage gets a gradient


def test_split_loss_equals_unsplit():
  """Same flat parameters, any S: same model, same loss and same flat gradient."""
  p1, x1, f1 = charlm(1)
  flat = merge_blocks(x1, p1.block_sizes)
  l1, g1 = f1(x1, batch())
  g1 = merge_blocks(g1, p1.block_sizes)
  for S in (16,):
    pS, xS_init, fS = charlm(S)
    xS = split_blocks(flat, pS.block_sizes)
    lS, gS = fS(xS, batch())
    np.testing.assert_allclose(lS, l1, rtol=1e-12)
    np.testing.assert_allclose(merge_blocks(gS, pS.block_sizes), g1, rtol=1e-10, atol=1e-14)
    np.testing.assert_array_equal(merge_blocks(xS_init, pS.block_sizes), flat)


def test_sgd_learns_toward_entropy_rate():
  """A few hundred SGD steps lower the eval loss well below its start."""
  p = make_charlm(4, hidden=16, n_layers=8, n_chains=16, length=512, n_eval=512)
  x = jax.jit(p.init)(jax.random.key(0))

  @jax.jit
  def train(x):
    def step(x, k):
      return x - 0.3 * p.grad(x, p.sample(k)), None
    return jax.lax.scan(step, x, jax.random.split(jax.random.key(1), 300))[0]

  fl = jax.jit(p.full_loss)
  l0, l1 = float(fl(x)), float(fl(train(x)))
  assert l1 < l0 - 0.5 and l1 > p.f_star - 0.1


def test_text_file(tmp_path):
  path = tmp_path / "t.txt"
  path.write_text("the quick brown fox jumps over the lazy dog. " * 40)
  p = make_charlm(2, text=str(path), C=4, hidden=8, n_layers=4)
  assert p.f_star is None and p.V == len(set("the quick brown fox jumps over the lazy dog. "))
  x = jax.jit(p.init)(jax.random.key(0))
  assert np.isfinite(float(jax.jit(p.loss)(x, p.sample(jax.random.key(1)))))
  with pytest.raises(ValueError, match="cannot read"):
    make_charlm(2, text=str(tmp_path / "missing.txt"))
  with pytest.raises(ValueError, match="S="):
    make_charlm(17)
