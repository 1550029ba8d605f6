"""The whole theorem checked with exact expectations on small models (no sampling error).

Problem: ``S`` blocks of one coordinate each; ``f`` a random convex quadratic (``L``,
``f*`` exact), a sum of ``alpha_m log cosh(a_m'x - c_m)`` (convex, not quadratic,
``L <= sum_m alpha_m ||a_m||^2``) or a sum of ``alpha_m log(1 + (a_m'x - c_m)^2)``
(nonconvex; ``|h''| <= 2`` so ``L <= 2 sum_m alpha_m ||a_m||^2``); the last two are
``>= 0``, so ``Delta <= f(x^0)`` is used (an upper bound keeps the theorem valid).
Oracle ``g(x; xi) = grad f(x) + s xi`` with ``xi`` uniform on ``{-1, 1}^S``: per block
``sigma_i^2 = s^2``, ``sigma2 = S s^2`` exactly.

Algorithm: RPD with the steady-state PipeDream table ``tau[i][j]`` of :mod:`rpd.theory.delay`
(``tau = tau_max(S)``) or a random table, for ``K`` iterations; every one of the
``(S 2^S)^K`` outcomes is enumerated, so ``(1/K) sum_k E||grad f(x^k)||^2`` is exact.

Theoretical guarantee: :func:`rpd.theory.theorem.derive` at a step size inside each variant's
condition. Returns ``(measured, theory)`` pairs (PEPit style) and the smallest ratio.
"""
from __future__ import annotations

import itertools

import numpy as np

from rpd.theory import delay, lemmas, theorem
from rpd.theory.check import gamma_max, theory_side


def _model(rng, S_, kind):
  if kind == "quadratic":
    M = rng.standard_normal((S_, S_))
    H = M @ M.T / S_ + 0.05 * np.eye(S_)
    b = rng.standard_normal(S_)
    x_star = np.linalg.solve(H, b)
    f_star = -0.5 * b @ x_star
    L_ = float(np.linalg.eigvalsh(H).max())
    grad = lambda X: X @ H - b  # rows are points (H symmetric)
    f = lambda x: 0.5 * x @ H @ x - b @ x
    return f, grad, L_, f_star
  m = int(rng.integers(1, 4))
  A = rng.standard_normal((m, S_))
  alpha = rng.uniform(0.3, 2.0, size=m)
  cc = rng.standard_normal(m) * 2
  if kind == "logcosh":
    L_ = float(np.sum(alpha * np.sum(A ** 2, axis=1)))
    grad = lambda X: (np.tanh(X @ A.T - cc) * alpha) @ A
    f = lambda x: float(np.sum(alpha * np.log(np.cosh(A @ x - cc))))
    return f, grad, L_, 0.0
  L_ = float(2 * np.sum(alpha * np.sum(A ** 2, axis=1)))
  grad = lambda X: (2 * (X @ A.T - cc) / (1 + (X @ A.T - cc) ** 2) * alpha) @ A
  f = lambda x: float(np.sum(alpha * np.log1p((A @ x - cc) ** 2)))
  return f, grad, L_, 0.0


def exact_lhs(grad, x0, table, gamma_, s, K_):
  """``(1/K) sum_{k<K} E||grad f(x^k)||^2`` by enumerating every outcome."""
  S_ = x0.size
  noises = np.array(list(itertools.product((-1.0, 1.0), repeat=S_)))
  n_out = S_ * len(noises)
  ids = np.array(list(itertools.product(range(n_out), repeat=K_)), dtype=int)
  P = ids.shape[0]
  blocks, noise = ids // len(noises), noises[ids % len(noises)]  # (P, K), (P, K, S)
  xs = np.zeros((P, K_ + 1, S_))
  xs[:, 0] = x0
  rows = np.arange(P)
  total = 0.0
  for k in range(K_):
    total += np.mean(np.sum(grad(xs[:, k]) ** 2, axis=1))
    i_k = blocks[:, k]
    xhat = np.stack([xs[rows, np.maximum(0, k - table[i_k, j]), j] for j in range(S_)], axis=1)
    g = grad(xhat)[rows, i_k] + s * noise[rows, k, i_k]
    xs[:, k + 1] = xs[:, k]
    xs[rows, k + 1, i_k] -= gamma_ * g
  return total / K_


def theorem_exact(cases: int = 16, seed: int = 7) -> dict:
  """Exact LHS against both variants' bounds on ``cases`` small models.

  Returns:
    dict with ``rows`` (``measured`` and ``theory`` per variant), ``check`` (a
    :class:`rpd.theory.lemmas.Check` over all pairs) and ``tightest`` per variant.
  """
  rng = np.random.default_rng(seed)
  rows, ok, tight = [], True, {"cs": np.inf, "martingale": np.inf}
  for t in range(cases):
    S_, K_ = (2, 5) if t % 2 == 0 else (3, 3)
    f, grad, L_, f_lo = _model(rng, S_, ("quadratic", "logcosh", "cauchy")[t % 3])
    table = delay.tau_table(S_) if t % 4 != 3 else rng.integers(0, 4, size=(S_, S_))
    tau_ = int(table.max())
    x0 = rng.standard_normal(S_) * 2
    s = float(rng.uniform(0.05, 1.0))
    row = {"S": S_, "K": K_, "tau": tau_, "L": L_}
    for v in ("cs", "martingale"):
      g = gamma_max(v, L_, tau_) * (1.0 if t % 2 == 0 else float(rng.uniform(0.2, 1.0)))
      lhs = exact_lhs(grad, x0, table, g, s, K_)
      bound = theory_side(v, gamma_=g, K_=K_, S_=S_, L_=L_, tau_=tau_, sigma2_=S_ * s ** 2,
                          Delta_=f(x0) - f_lo)
      row[v] = {"gamma": g, "measured": lhs, "theory": bound}
      ok &= bound is not None and lhs <= bound * (1 + 1e-12)
      tight[v] = min(tight[v], bound / lhs)
    rows.append(row)
  check = lemmas.Check(bool(ok), "exact-enumeration", 2 * cases, float(min(tight.values())),
                       "(1/K) sum_k E||grad f(x^k)||^2 <= bound, expectation exact over all "
                       "(S 2^S)^K outcomes, gamma up to gamma_max")
  return {"rows": rows, "check": check, "tightest": {k: float(v) for k, v in tight.items()}}
