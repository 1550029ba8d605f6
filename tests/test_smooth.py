"""The non-quadratic extension (``rpd.theory.smooth``): the anchor fact checked pathwise on a
non-quadratic problem (every step, every block, written here from the definitions), the
certificate by hand, and ``M = 0`` reducing to the A8 theorem."""
import numpy as np
import pytest
import sympy as sp

from rpd.theory import coupled as co
from rpd.theory import smooth as sm
from rpd.theory import stability as st
from rpd.theory.theorem import Delta, K, L, S, gamma, sigma2, tau


def test_certificate_is_the_hand_derivation():
  """q = (1 + b) x A8's q; r = 2 (1 + b)/b M^2 G^2 tau^3 (S + tau - 1) / S."""
  d = sm.derive()
  b, a = sm.b, co.a
  assert sp.simplify(d["q"] - (1 + b) * co.derive()["quadratic_coef"]) == 0
  assert sp.simplify(d["r"] - 2 * (1 + b) / b * sm.M ** 2 * sm.G ** 2 * tau ** 3
                     * (S + tau - 1) / S) == 0


def test_M_zero_is_the_A8_theorem():
  """With M = 0 and b -> 0 the condition and the bound are A8's, and so is gamma_max."""
  d, a8 = sm.derive(), co.derive()
  assert sp.simplify(d["condition"].subs({sm.M: 0}).subs(sm.b, 0) - a8["condition"]) == 0
  assert sp.simplify(sp.limit(d["bound"].subs(sm.M, 0), sm.b, 0) - a8["bound"]) == 0
  for S_ in (2, 8):
    t = int(st.delay_table(S_).max())
    assert sm.gamma_max(S_, t, 1.0, 0.0, 1.0, b_=1e-12) == pytest.approx(co.gamma_max(S_, t),
                                                                         rel=1e-9)
  assert sm.gamma_max(8, 60, 1.0, 1.0, 1.0) < sm.gamma_max(8, 60, 1.0, 0.1, 1.0)


def test_anchor_fact_holds_pathwise_on_a_non_quadratic_problem():
  """f(x) = sum_k log cosh(a_k'x) - c'x (|phi'''| <= 4/(3 sqrt 3)), bounded uniform noise,
  rpd with PipeDream's table (S = 3): at every step and for EVERY block i,
  ||grad_i f(x) - grad_i f(x_hat^(i))||^2 <= (1 + b) ||[hess f(x^{k-tau}) (x - x_hat^(i))]_i||^2
  + (1 + 1/b) (M gamma tau G)^2 ||x - x_hat^(i)||^2, b in {0.1, 1, 10}; and it is not vacuous
  (the Hessian's change term is needed: dropping it fails somewhere)."""
  rng = np.random.default_rng(0)
  S_, d, n = 3, 6, 8
  A = rng.standard_normal((n, d))
  c = rng.standard_normal(d)
  T = st.delay_table(S_)
  t = int(T.max())
  parts = np.array_split(np.arange(d), S_)
  grad = lambda x: A.T @ np.tanh(A @ x) - c
  hess = lambda x: (A.T * (1 / np.cosh(A @ x) ** 2)) @ A
  M_ = 4 / (3 * np.sqrt(3)) * float(np.sum(np.linalg.norm(A, axis=1) ** 3))
  nu = 0.5
  G_ = max(float(np.sum(np.linalg.norm(A[:, p], axis=1)) + np.linalg.norm(c[p]))
           + nu * np.sqrt(p.size) for p in parts)
  g_ = 0.3 / (G_ * t)
  xs = [rng.standard_normal(d)]
  worst, needed = 0.0, False
  for k in range(60):
    x = xs[-1]
    Hbar = hess(xs[max(0, k - t)])
    for i in range(S_):
      xh = np.concatenate([xs[max(0, k - T[i][j])][parts[j]] for j in range(S_)])
      e = x - xh
      Dg = float(np.sum((grad(x) - grad(xh))[parts[i]] ** 2))
      Dl = float(np.sum((Hbar @ e)[parts[i]] ** 2))
      D = float(e @ e)
      for bb in (0.1, 1.0, 10.0):
        rhs = (1 + bb) * Dl + (1 + 1 / bb) * (M_ * g_ * t * G_) ** 2 * D
        assert Dg <= rhs * (1 + 1e-12) + 1e-300
        worst = max(worst, Dg / rhs if rhs > 0 else 0.0)
      needed |= Dg > Dl * (1 + 1e-9)
    i = int(rng.integers(S_))
    xh = np.concatenate([xs[max(0, k - T[i][j])][parts[j]] for j in range(S_)])
    gi = grad(xh)[parts[i]] + rng.uniform(-nu, nu, parts[i].size)
    assert np.linalg.norm(gi) <= G_
    xn = x.copy()
    xn[parts[i]] -= g_ * gi
    xs.append(xn)
  assert needed and worst > 0.01, worst
