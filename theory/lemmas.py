"""The atomic facts of the RPD convergence proof, each checked symbolically or numerically.

Setting (the notation of :mod:`rpd.theory.theorem`). ``x in R^d`` is split into ``S`` blocks;
``U_i`` embeds block ``i``. One iteration of Randomized PipeDream is

    x^{k+1} = x^k - gamma U_{i_k} g_{i_k}(x_hat^k; xi^k),
    block j of x_hat^k = x_j^{max(0, k - tau_{k,j})},  0 <= tau_{k,j} <= tau,

with ``i_k ~ U{1..S}`` and ``xi^k`` fresh. Every fact below is a function returning a
:class:`Check`: what was checked, how (``symbolic``: an identity that sympy reduces to 0;
``numeric``: random instances plus adversarial ones built to make the inequality tight;
``exact-enumeration``: an expectation computed exactly over every outcome of a small
discrete model) and the smallest slack ratio seen (``tightest``: min over instances of
``rhs / lhs``; 1.0 means an instance attained equality).

Each check can fail: the numeric ones compare with a relative tolerance of ``1e-9``.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import sympy as sp

_RTOL = 1e-9


@dataclasses.dataclass(frozen=True)
class Check:
  """Outcome of checking one fact.

  Attributes:
    passed: True when every instance satisfied the fact.
    method: ``symbolic``, ``numeric`` or ``exact-enumeration``.
    instances: number of instances checked (1 for a symbolic identity).
    tightest: min over instances of rhs / lhs (``None`` for identities).
    detail: one line saying what was checked.
  """
  passed: bool
  method: str
  instances: int
  tightest: float | None
  detail: str


# --- helpers -------------------------------------------------------------------------------

def _blocks(rng: np.random.Generator, d: int, S: int) -> list[np.ndarray]:
  """A random partition of ``range(d)`` into ``S`` non-empty contiguous blocks."""
  cuts = np.sort(rng.choice(np.arange(1, d), size=S - 1, replace=False)) if S > 1 else []
  edges = np.concatenate([[0], cuts, [d]]).astype(int)
  return [np.arange(edges[s], edges[s + 1]) for s in range(S)]


def _random_smooth(rng: np.random.Generator, d: int, kind: str):
  """``(f, grad, L)`` of a random L-smooth function with ``L`` known exactly or bounded.

  kinds: ``quadratic`` (indefinite, eigenvalues in ``[-L, L]``, ``L`` exact),
  ``isotropic`` (``L/2 ||x||^2 + b'x``: the adversarial case, descent lemma and smoothness
  hold with equality), ``logistic`` (``L = ||A||_2^2 / (4 n)``, a bound).
  """
  if kind in ("quadratic", "isotropic"):
    L = float(rng.uniform(0.1, 10.0))
    if kind == "isotropic":
      H = L * np.eye(d)
    else:
      Q, _ = np.linalg.qr(rng.standard_normal((d, d)))
      lam = rng.uniform(-L, L, size=d)
      lam[rng.integers(d)] = L * (1 if rng.random() < 0.5 else -1)
      H = (Q * lam) @ Q.T
    b = rng.standard_normal(d)
    return (lambda x: 0.5 * x @ H @ x + b @ x), (lambda x: H @ x + b), L
  n = int(rng.integers(3, 12))
  A = rng.standard_normal((n, d)) * rng.uniform(0.2, 3.0)
  y = rng.choice([-1.0, 1.0], size=n)
  L = float(np.linalg.norm(A, 2) ** 2 / (4 * n))

  def f(x):
    return float(np.mean(np.logaddexp(0.0, -y * (A @ x))))

  def grad(x):
    z = -y * (A @ x)
    return A.T @ (-y / (1.0 + np.exp(-z))) / n

  return f, grad, L


def _ratio(rhs: float, lhs: float) -> float:
  """rhs / lhs with the conventions 0/0 = 1 and rhs/0 = inf."""
  if lhs <= 0:
    return 1.0 if rhs <= 0 else float("inf")
  return rhs / lhs


def _le(lhs: float, rhs: float, scale: float) -> bool:
  return lhs <= rhs + _RTOL * max(1.0, abs(scale))


# --- symbolic identities -------------------------------------------------------------------

_n = sp.Symbol("n", integer=True, positive=True)  # the dimension, symbolic
_c = sp.Symbol("c", integer=True, positive=True)  # a coordinate index
_i = sp.Symbol("i", integer=True)  # a block index


def polarization() -> Check:
  """``-<a, b> = 1/2 (||a - b||^2 - ||a||^2 - ||b||^2)`` in ``R^n`` for every ``n``.

  Proof (sympy): both sides are ``sum_{c=1}^n`` of a coordinate term; the residual's summand
  expands to 0, so ``Sum(residual_c, (c, 1, n)).doit()`` is 0 for a symbolic ``n``.
  """
  a = sp.IndexedBase("a", real=True)
  b = sp.IndexedBase("b", real=True)
  summand = -a[_c] * b[_c] - sp.Rational(1, 2) * ((a[_c] - b[_c]) ** 2 - a[_c] ** 2
                                                  - b[_c] ** 2)
  residual = sp.Sum(sp.expand(summand), (_c, 1, _n)).doit()
  return Check(residual == 0, "symbolic", 1, None,
               "Sum_{c=1}^n of the coordinate residual is 0 for symbolic n")


def variance_decomposition() -> Check:
  """``E||m + e||^2 = ||m||^2 + E||e||^2`` when ``E e = 0``, in ``R^n`` for every ``n``.

  Proof (sympy): per coordinate ``(m_c + e_c)^2`` is a polynomial in ``e_c``; the
  expectation is linear, so it maps ``e_c^p`` to the moment ``mu_p`` (any distribution);
  with ``mu_1 = E e_c = 0`` the coordinate residual ``E(m_c + e_c)^2 - m_c^2 - mu_2`` is 0,
  and ``Sum_{c=1}^n`` of it is 0 for a symbolic ``n``.
  """
  m = sp.IndexedBase("m", real=True)
  e = sp.Symbol("e", real=True)
  mu = sp.IndexedBase("mu", real=True)  # mu[p] = E e_c^p of coordinate c
  poly = sp.Poly(sp.expand((m[_c] + e) ** 2), e)
  expectation = sum(coef * (1 if p == 0 else mu[p]) for (p,), coef in poly.terms())
  residual_c = sp.expand(expectation.subs(mu[1], 0) - m[_c] ** 2 - mu[2])
  residual = sp.Sum(residual_c, (_c, 1, _n)).doit()
  return Check(residual == 0, "symbolic", 1, None,
               "E linear, E e_c = 0: Sum_{c=1}^n of the coordinate residual is 0 for symbolic n")


def block_expectation() -> Check:
  """``E_{i ~ U{1..S}} ||U_i^T v||^2 = ||v||^2 / S`` for every ``S`` and every partition.

  Proof (sympy), blocks ``(e_i, e_{i+1}]`` with ``0 = e_0 <= ... <= e_S = d``: (1) a block's
  sum is a difference of prefix sums, ``Sum_{c=lo+1}^{hi} v_c^2 = P(hi) - P(lo)``,
  ``P(m) = Sum_{c=1}^m v_c^2`` (simplifies to 0 for symbolic ``lo, hi``); (2) the sum over
  blocks telescopes, ``Sum_{i=0}^{S-1} (P(e_{i+1}) - P(e_i)) = P(e_S) - P(e_0)``
  (``Sum(...).doit()`` for symbolic ``S``); (3) ``P(d) - P(0) = ||v||^2`` and ``E_i = (1/S)
  Sum_i``.
  """
  v = sp.IndexedBase("v", real=True)
  lo, hi = sp.symbols("lo hi", integer=True, nonnegative=True)
  pref = lambda M: sp.Sum(v[_c] ** 2, (_c, 1, M))
  step1 = sp.simplify(sp.Sum(v[_c] ** 2, (_c, lo + 1, hi)) - (pref(hi) - pref(lo))) == 0
  S_ = sp.Symbol("S", integer=True, positive=True)
  e = sp.Function("e")
  P = sp.Function("P")
  tele = sp.Sum(P(e(_i + 1)) - P(e(_i)), (_i, 0, S_ - 1)).doit()
  step2 = sp.simplify(tele - (P(e(S_)) - P(e(0)))) == 0
  step3 = pref(0).doit() == 0
  return Check(bool(step1 and step2 and step3), "symbolic", 1, None,
               "prefix-sum split (symbolic lo, hi) + telescoping over S blocks (symbolic S)")


def descent_quadratic_identity() -> Check:
  """For a quadratic the block descent step is exact: the gap is ``gamma^2/2 v_i' H_ii v_i``.

  ``f(x - gamma U_i v) = f(x) - gamma <grad_i f(x), v> + gamma^2/2 v' H_ii v`` with a
  generic symmetric ``H`` in R^{3x3} and block ``i`` = the first two coordinates; since
  ``H <= L I`` this gives the descent lemma with equality at ``H = L I``.
  """
  g = sp.Symbol("gamma", positive=True)
  hs = sp.symbols("h11 h12 h13 h22 h23 h33", real=True)
  H = sp.Matrix([[hs[0], hs[1], hs[2]], [hs[1], hs[3], hs[4]], [hs[2], hs[4], hs[5]]])
  x = sp.Matrix(sp.symbols("x1:4", real=True))
  bb = sp.Matrix(sp.symbols("b1:4", real=True))
  v = sp.Matrix(sp.symbols("v1:3", real=True))
  Uv = sp.Matrix([v[0], v[1], 0])
  f = lambda z: (sp.Rational(1, 2) * z.T * H * z + bb.T * z)[0]
  grad = H * x + bb
  rhs = f(x) - g * (grad[0] * v[0] + grad[1] * v[1]) + g ** 2 / 2 * (v.T * H[:2, :2] * v)[0]
  residual = sp.expand(f(x - g * Uv) - rhs)
  return Check(residual == 0, "symbolic", 1, None,
               "quadratic block step: residual of the exact expansion reduces to 0")


# --- numeric inequalities ------------------------------------------------------------------

_KINDS = ("quadratic", "isotropic", "logistic")


def descent_lemma(n: int = 300, seed: int = 1) -> Check:
  """Block descent lemma.

  ``f(x - gamma U_i v) <= f(x) - gamma <grad_i f(x), v> + L gamma^2/2 ||v||^2``.

  Random L-smooth ``f`` (indefinite quadratics, logistic losses) and the isotropic
  quadratic ``L/2||x||^2 + b'x``, where it is an equality.
  """
  rng = np.random.default_rng(seed)
  ok, tight = True, np.inf
  for t in range(n):
    d = int(rng.integers(2, 9))
    S_ = int(rng.integers(1, d + 1))
    f, grad, L = _random_smooth(rng, d, _KINDS[t % 3])
    x = rng.standard_normal(d) * 2
    blk = _blocks(rng, d, S_)[int(rng.integers(S_))]
    v = rng.standard_normal(blk.size)
    gam = float(rng.uniform(0.01, 2.0 / L))
    step = np.zeros(d)
    step[blk] = gam * v
    lhs = f(x - step) - f(x) + gam * grad(x)[blk] @ v  # <= L gam^2/2 ||v||^2
    rhs = L * gam ** 2 / 2 * v @ v
    ok &= _le(lhs, rhs, rhs)
    tight = min(tight, _ratio(rhs, lhs))
  return Check(bool(ok), "numeric", n, float(tight),
               "(f(x - gamma U_i v) - f(x) + gamma<grad_i f, v>) <= L gamma^2/2 ||v||^2")


def block_smoothness(n: int = 300, seed: int = 2) -> Check:
  """``||grad_i f(x) - grad_i f(y)||^2 <= ||grad f(x) - grad f(y)||^2 <= L^2 ||x - y||^2``.

  Adversarial: the isotropic quadratic with ``x - y`` supported on block ``i`` (equality).
  """
  rng = np.random.default_rng(seed)
  ok, tight = True, np.inf
  for t in range(n):
    d = int(rng.integers(2, 9))
    S_ = int(rng.integers(1, d + 1))
    f, grad, L = _random_smooth(rng, d, _KINDS[t % 3])
    blk = _blocks(rng, d, S_)[int(rng.integers(S_))]
    x = rng.standard_normal(d) * 2
    diff = rng.standard_normal(d)
    if t % 3 == 1:
      diff = np.where(np.isin(np.arange(d), blk), diff, 0.0)
    y = x - diff
    gx, gy = grad(x), grad(y)
    lhs = float(np.sum((gx[blk] - gy[blk]) ** 2))
    mid = float(np.sum((gx - gy) ** 2))
    rhs = L ** 2 * float(diff @ diff)
    ok &= _le(lhs, mid, mid) and _le(mid, rhs, rhs)
    tight = min(tight, _ratio(rhs, lhs))
  return Check(bool(ok), "numeric", n, float(tight),
               "block gradient difference <= full difference <= L^2 ||x - y||^2")


def _simulate_window(rng, S_, d, K_, tau_, adversarial):
  """Random block-SGD trajectory: returns ``x`` (K+1, d), ``i`` (K,), ``v`` (K, d), delays."""
  parts = _blocks(rng, d, S_)
  if adversarial:
    i_seq = np.zeros(K_, dtype=int)
    w = rng.standard_normal(d)
    v = np.tile(np.where(np.isin(np.arange(d), parts[0]), w, 0.0), (K_, 1))
    delays = np.full((K_ + 1, S_), tau_)
  else:
    i_seq = rng.integers(S_, size=K_)
    v = np.zeros((K_, d))
    for l in range(K_):
      v[l, parts[i_seq[l]]] = rng.standard_normal(parts[i_seq[l]].size)
    delays = rng.integers(0, tau_ + 1, size=(K_ + 1, S_))
  x = np.zeros((K_ + 1, d))
  x[0] = rng.standard_normal(d)
  for l in range(K_):
    x[l + 1] = x[l] - v[l]  # gamma folded into v
  return parts, x, v, delays


def _cs_bound(tau_, window_sq):
  """The pathwise lemma's right-hand side (``gamma`` folded into the steps)."""
  return tau_ * window_sq


def stale_read_cauchy_schwarz(n: int = 400, seed: int = 3, bound=_cs_bound) -> Check:
  """Pathwise stale-read lemma (Cauchy-Schwarz form).

  ``||x^k - x_hat^k||^2 <= gamma^2 tau sum_{l = max(0, k - tau)}^{k-1} ||g_{i_l}^l||^2``
  for ANY sequence of blocks, block vectors and delays ``tau_{k,j} <= tau`` (reads before 0
  see ``x^0``). Block ``j`` of ``x^k - x_hat^k`` is the sum of the at most ``tau`` steps on
  block ``j`` in its window, and every step ``l`` lies in one block only. Adversarial:
  every step on the same block with the same vector and every delay equal to ``tau``
  (Cauchy-Schwarz is then an equality).
  """
  rng = np.random.default_rng(seed)
  ok, tight = True, np.inf
  for t in range(n):
    S_ = int(rng.integers(1, 6))
    d = S_ + int(rng.integers(0, 5))
    tau_ = int(rng.integers(0, 9))
    K_ = int(rng.integers(1, 25))
    parts, x, v, delays = _simulate_window(rng, S_, d, K_, tau_, adversarial=(t % 4 == 0))
    k = K_
    xhat = x[k].copy()
    for j, blk in enumerate(parts):
      xhat[blk] = x[max(0, k - delays[k, j])][blk]
    lhs = float(np.sum((x[k] - xhat) ** 2))
    rhs = bound(tau_, float(np.sum(v[max(0, k - tau_):k] ** 2)))
    ok &= _le(lhs, rhs, rhs)
    tight = min(tight, _ratio(rhs, lhs))
  return Check(bool(ok), "numeric", n, float(tight),
               "||x^k - x_hat^k||^2 <= gamma^2 tau sum_window ||g_{i_l}||^2 pathwise")


def window_count(K_max: int = 40, tau_max_: int = 40) -> Check:
  """``sum_{k<K} sum_{l=max(0,k-tau)}^{k-1} a_l <= tau sum_{l<K} a_l`` for ``a_l >= 0``.

  The coefficient of ``a_l`` is ``#{k : l < k <= min(l + tau, K - 1)}``, counted exactly for
  every ``K <= 40``, ``tau <= 40`` and compared with the formula of the certificate,
  :func:`rpd.theory.theorem.window_count_bound` at ``sum_k G_k = 1`` (``a = e_l``; equality
  for ``l <= K - 1 - tau``).
  """
  from rpd.theory import theorem
  bound = sp.lambdify(theorem.tau, theorem.window_count_bound(sp.Integer(1)), "math")
  ok, tight, count = True, np.inf, 0
  for K_ in range(1, K_max + 1):
    for tau_ in range(0, tau_max_ + 1):
      coef = np.zeros(K_, dtype=int)
      for k in range(K_):
        coef[max(0, k - tau_):k] += 1
      rhs = float(bound(tau_))
      ok &= bool(np.all(coef <= rhs))
      if coef.max() > 0:
        tight = min(tight, rhs / coef.max())
      count += 1
  return Check(bool(ok), "exact-count", count, float(tight),
               "each index l appears in at most tau windows (exact counts vs the certificate's "
               "formula)")


def _martingale_bound(tau_, window_G, n_window, sigma2_, S_):
  """The expected lemma's right-hand side (``gamma`` folded into the steps)."""
  return 2 * (tau_ * window_G + n_window * sigma2_ / S_)


def stale_read_martingale(cases: int = 12, seed: int = 4, bound=_martingale_bound) -> Check:
  """Expected stale-read lemma (martingale form), checked by exact enumeration.

  ``E||x^k - x_hat^k||^2 <= 2 gamma^2 (tau sum_{l=k-tau}^{k-1} G_l + tau sigma^2 / S)``,
  ``G_l = E||grad_{i_l} f(x_hat^l)||^2``. Proof: ``g = grad f + e`` and Young's inequality
  split the window sum in two; the gradient part is Cauchy-Schwarz as in the pathwise form;
  the noise part is a martingale (``E[e^l | past, i_l] = 0``; the window depends only on
  ``k`` and ``i_k``), so its cross terms vanish and ``E||sum e||^2 = sum E||e_{i_l}||^2
  <= tau sigma^2 / S``. Needs delays independent of the noise (true for the `rpd` rule,
  where ``tau_{k,j} = tau[i_k][j]``).

  Model: ``S`` blocks of one coordinate each, ``g(x; xi) = m(x) + s xi`` with ``xi`` uniform
  on ``{-1, 1}^S`` (so ``sigma_i^2 = s^2``, ``sigma^2 = S s^2``) and ``m`` a random
  nonlinear map (or a constant map: the adversarial case); delays ``tau[i_k][j]`` a random
  table bounded by ``tau``. All ``(S * 2^S)^k`` outcomes are enumerated: expectations are
  exact, so ``tightest`` is a true ratio, not a sample.
  """
  rng = np.random.default_rng(seed)
  ok, tight = True, np.inf
  for t in range(cases):
    S_ = 1 + t % 2
    k_end = 3 if S_ == 2 else 5
    tau_ = int(rng.integers(1, k_end + 1))
    s = float(rng.uniform(0.2, 2.0))
    W = rng.standard_normal((S_, S_))
    c = rng.standard_normal(S_)
    const = t % 3 == 0
    mean = (lambda z: c) if const else (lambda z: np.tanh(W @ z) * 2 + c)
    table = rng.integers(0, tau_ + 1, size=(S_, S_))
    if const:
      table[:] = tau_
    noises = np.array(list(itertools.product((-1.0, 1.0), repeat=S_)))
    outcomes = [(i_, e) for i_ in range(S_) for e in noises]
    x0 = rng.standard_normal(S_)
    G = np.zeros(k_end)
    lhs = 0.0
    n_paths = len(outcomes) ** k_end
    for path in itertools.product(outcomes, repeat=k_end):
      xs = [x0]
      for l, (i_, e) in enumerate(path):
        xhat = np.array([xs[max(0, l - table[i_, j])][j] for j in range(S_)])
        G[l] += mean(xhat)[i_] ** 2 / n_paths
        step = np.zeros(S_)
        step[i_] = mean(xhat)[i_] + s * e[i_]
        xs.append(xs[-1] - step)  # gamma folded into the step
      for i_k in range(S_):
        xhat = np.array([xs[max(0, k_end - table[i_k, j])][j] for j in range(S_)])
        lhs += np.sum((xs[-1] - xhat) ** 2) / (n_paths * S_)
    window = G[max(0, k_end - tau_):k_end]
    rhs = bound(tau_, float(window.sum()), min(tau_, k_end), S_ * s ** 2, S_)
    ok &= _le(lhs, rhs, rhs)
    tight = min(tight, _ratio(rhs, lhs))
  return Check(bool(ok), "exact-enumeration", cases, float(tight),
               "E||x^k - x_hat^k||^2 <= 2 gamma^2 (tau sum_window G_l + tau sigma^2/S), "
               "expectations exact over all outcomes")


ALL = {
    "polarization": polarization,
    "variance_decomposition": variance_decomposition,
    "block_expectation": block_expectation,
    "descent_quadratic_identity": descent_quadratic_identity,
    "descent_lemma": descent_lemma,
    "block_smoothness": block_smoothness,
    "stale_read_cauchy_schwarz": stale_read_cauchy_schwarz,
    "stale_read_martingale": stale_read_martingale,
    "window_count": window_count,
}


def _moment_instances(seed: int = 11):
  """Quadratic instances for the expected stale-read lemmas (exact moments, long horizons).

  ``S in {1, 2, 3}``; the PipeDream table (``tau_max = 3, 7`` for ``S = 2, 3``) or random
  tables; ``K = 4 tau_max + 6`` so that most reads are stale. Adversarial ones: a constant
  gradient on one block (Cauchy-Schwarz tight), pure noise with ``tau = 1`` (noise part
  tight), negative curvature with small ``L gamma tau`` (positive cross terms between the
  gradient and the noise: Young's factor is needed).
  """
  from rpd.theory.delay import tau_table
  rng = np.random.default_rng(seed)
  out = []
  for tau_ in (1, 2, 4):  # S = 1: constant gradient / pure noise / negative curvature
    T = np.array([[tau_]])
    out.append((np.zeros((1, 1)), np.array([1.0]), np.zeros(1), T, 0.1, np.zeros(1)))
    out.append((np.zeros((1, 1)), np.zeros(1), np.ones(1), T, 0.1, np.zeros(1)))
    out.append((-np.eye(1), np.zeros(1), np.ones(1), T, 0.02, np.zeros(1)))
  for t in range(18):
    S_ = 2 + t % 2
    M = rng.standard_normal((S_, S_))
    H = (M + M.T) / 2 if t % 3 else M @ M.T / S_
    T = tau_table(S_) if t % 2 == 0 else rng.integers(0, 2 * S_ + 2, size=(S_, S_))
    T = np.maximum(T, 0)
    L_ = float(np.abs(np.linalg.eigvalsh(H)).max())
    gam = float(rng.uniform(0.05, 1.0)) / (L_ * max(1, T.max()))
    out.append((H, rng.standard_normal(S_), rng.uniform(0.0, 1.5, S_), T, gam,
                rng.standard_normal(S_)))
  return out


def stale_read_expected(bound, name: str = "expected stale-read lemma") -> Check:
  """An expected stale-read lemma ``D_k <= bound(gamma, tau, S, W_k, sigma2)`` at every k.

  ``bound`` is built from the lemma constants ``a, b`` of
  :data:`rpd.theory.theorem.VARIANTS` (never retyped here): ``gamma^2 (a tau W_k + b
  sigma2 / S)``, ``W_k = sum_{l=max(0,k-tau)}^{k-1} G_l``. Expectations are exact
  (:mod:`rpd.theory.moments`), for every ``k <= K = 4 tau_max + 6``.
  """
  from rpd.theory import moments
  ok, tight, count = True, np.inf, 0
  for H, c, s, T, gam, x0 in _moment_instances():
    S_ = H.shape[0]
    tau_ = int(T.max())
    K_ = 4 * tau_ + 6
    tr = moments.trajectory(H, c, s, T, gam, x0, K_)
    s2 = float(np.sum(s ** 2))
    for k in range(1, K_ + 1):
      W = float(tr["G"][max(0, k - tau_):k].sum())
      rhs = float(bound(gam, tau_, S_, W, s2))
      lhs = float(tr["D"][k])
      ok &= _le(lhs, rhs, rhs)
      tight = min(tight, _ratio(rhs, lhs))
      count += 1
  return Check(bool(ok), "exact-moments", count, float(tight),
               f"{name}: E||x^k - x_hat^k||^2 <= gamma^2 (a tau W_k + b sigma2/S) at every "
               "k <= 4 tau_max + 6 (S = 1, 2, 3), expectations exact")


def noise_per_block_symbolic() -> Check:
  """``E_{i_k} E||g_{i_k} - grad_{i_k} f||^2 <= sigma2 / S``, proved with sympy for every ``S``.

  Write the conditional block variances as ``v_i = sbar_i^2 - s_i`` with slacks ``s_i >= 0``
  (A3: the sup over points is ``sbar_i^2``, whatever point block ``i`` reads), average over
  the uniform ``i_k`` (A4, independent of the noise): ``sigma2/S - E v = (1/S)
  Sum_{i=1}^S s_i`` (summand identity, symbolic ``S``), a sum of nonnegative terms.
  """
  S_ = sp.Symbol("S", integer=True, positive=True)
  sb = sp.IndexedBase("sb", real=True)
  sl = sp.IndexedBase("sl", nonnegative=True)
  gap = sp.Sum(sp.expand(sb[_i] ** 2 - (sb[_i] ** 2 - sl[_i])), (_i, 1, S_)) / S_
  target = sp.Sum(sl[_i], (_i, 1, S_)) / S_
  ok = sp.simplify(gap - target) == 0 and bool(target.is_nonnegative)
  return Check(ok, "symbolic", 1, None,
               "sigma2/S - E_i v_i = (1/S) Sum_{i=1}^S slack_i >= 0 (symbolic S)")


ALL["noise_per_block"] = noise_per_block_symbolic
