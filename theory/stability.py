"""Exact stability thresholds and stationary excess of stale block SGD on quadratics.

The lower side of "how does staleness cost grow with S": instead of bounding, compute exactly
(no sampling) when the iteration of a rule on a quadratic diverges, and what it converges to.

Problem. ``f(x) = 1/2 (x - x*)' H (x - x*)`` with ``d = S`` (one coordinate per block), two
Hessians with ``lambda_max(H) = L``:

* ``isotropic``: ``H = L I`` (blocks decouple; only each block's own delay ``tau[i][i]``
  matters);
* ``rank1``: ``H = (L / S) 1 1'`` (every block's gradient reads every block).

Oracle ``g(x; xi) = H (x - x*) + sigma xi``, ``xi ~ N(0, I)``: per block ``sigma_i^2 =
sigma^2``, ``sigma2 = S sigma^2`` (the quadratic of :mod:`rpd.problems.quadratic`).

Algorithms, with ``e = x - x*`` and the window state ``z^k = (e^k, e^{k-1}, ..., e^{k-t})``,
``t = tau_max``:

* ``rpd``: ``i_k ~ U{1..S}``, ``e^{k+1} = e^k - gamma U_i (H_i e_hat + sigma xi_i)`` with
  ``e_hat_j = e_j^{k - tau[i][j]}``: ``z^{k+1} = A_{i_k} z^k + noise``, a random linear map.
  Mean: ``E z^{k+1} = M E z^k`` with ``M = (1/S) sum_i A_i``. Second moment: ``X^{k+1} =
  T(X^k) + Q`` with ``T(X) = (1/S) sum_i A_i X A_i'``, a positive map on the window
  covariance.
* ``pipedream``: the same update with a deterministic cyclic block order (the order of the
  updates of one period of :meth:`rpd.rules.PipeDreamRule.program`; PipeDream draws one
  gradient per microbatch, but the noise coordinates of different blocks are independent,
  so on these problems it equals independent noise per update). The "mean" recursion is the
  deterministic linear recursion itself, and it is also the second-moment recursion's
  stability: mean, mean-square and pathwise thresholds coincide.

Thresholds:

* mean: largest ``gamma`` with ``rho(M) < 1`` (``rpd``), ``rho(period map) < 1``
  (``pipedream``);
* mean-square: largest ``gamma`` with ``rho(T) < 1``. Criterion used (exact, no iteration):
  for a positive map ``T`` and ``Q >= 0``, if ``X - T(X) = Q`` has a positive definite
  solution then ``rho(T) < 1`` (the Perron eigenvector ``W >= 0`` of ``T*`` gives
  ``(1 - rho) <W, X> = <W, Q> >= 0`` with ``<W, X> > 0``; ``rho = 1`` would make ``1`` an
  eigenvalue, and the system singular); conversely for ``rho(T) < 1``, ``X = sum_n T^n(Q)``.
  Bisection on ``gamma`` over "the solution exists and is PD" (Cholesky).
* Structure that makes ``S = 32`` cheap. A fixed point of ``T`` is *Toeplitz in the lag*:
  rows ``1..t`` of ``A_i`` only shift the window, so ``X_{a,b} = X_{a-1,b-1}`` and the
  unknowns are the lag covariances ``r_m = E[e^k e^{k-m}]``, ``m = 0..t``. For
  ``isotropic`` every block is a scalar chain ``y^{k+1} = y^k - b_k (c y^{k-t} + gamma
  sigma xi)`` with ``b_k ~ Bernoulli(p)``, ``c = gamma L``, ``t = tau[i][i]`` (``rpd``:
  ``p = 1/S``; ``pipedream``: ``p = 1``, counted in the block's own updates, ``t = d_i``
  the own updates missed), whose fixed-point equations are (derived in :func:`chain_equations`
  with sympy)

      2 c r_t - c^2 r_0 = gamma^2 sigma^2,    r_m - r_{m-1} + p c r_{t+1-m} = 0 (m = 1..t):

  ``t + 1`` unknowns instead of ``(S (t + 1))^2``. The mean of the scalar chain is
  ``m^{k+1} = m^k - p c m^{k-t}``, stable iff ``0 < p c < 2 sin(pi / (2 (2 t + 1)))``
  (Levin and May 1976; checked here against companion-matrix eigenvalues).
* ``rank1`` has no such reduction: it uses the dense window maps (``n = S (t + 1)``
  states) on the quotient by the subspace ``{(v, ..., v): H v = 0}`` that every map fixes
  (:func:`reduced_maps`; without it ``rho = 1`` at every gamma); the mean-square map of
  ``rpd`` is an ``n^2 x n^2`` system, exact but limited to small ``S``
  (:data:`RANK1_MAX_S`); ``pipedream``'s covariance is a discrete Lyapunov equation.

Stationary excess: ``lim E||grad f(x^k)||^2 = tr(H^2 R_0)`` from the fixed point (for
``pipedream`` averaged over the ``S`` phases of a period; for ``isotropic`` each block is
constant between its updates, so its time average equals the chain's stationary ``r_0``).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sps
import scipy.sparse.linalg as spla

PROBLEMS = ("isotropic", "rank1")
RULES = ("rpd", "pipedream")
RANK1_MAX_S = {"mean": 8, "mean_square": 3}


# --- problem and rule data -----------------------------------------------------------------

def hessian(problem: str, S: int, L: float = 1.0) -> np.ndarray:
  """``H`` of the problem (``d = S``, ``lambda_max = L``)."""
  if problem == "isotropic":
    return L * np.eye(S)
  if problem == "rank1":
    return np.full((S, S), L / S)
  raise ValueError(f"unknown problem {problem!r}; known: {', '.join(PROBLEMS)}")


@functools.cache
def delay_table(S: int) -> np.ndarray:
  """Steady-state PipeDream table ``tau[i][j]`` (0-based) from :mod:`rpd.theory.delay`."""
  from rpd.theory.delay import tau_table
  return np.asarray(tau_table(S), dtype=np.int64)


@functools.cache
def pipedream_order(S: int) -> tuple[int, ...]:
  """Blocks updated in one period of PipeDream, in order (from the rule's event program)."""
  from rpd.rules import get_rule
  prog = get_rule("pipedream", S).program()
  order = tuple(int(b) for kind, _, b in prog.events if kind == "U")
  if sorted(order) != list(range(S)):
    raise AssertionError(f"pipedream period is not one update per block: {order}")
  return order


def own_delay_pipedream(S: int) -> np.ndarray:
  """``d_i``: updates of block ``i`` missed by its own read (cyclic order, table delays).

  Block ``i`` is updated at iterations ``k = pos_i + S n``; its read of itself is
  ``tau[i][i]`` iterations old, so it misses the own updates at ``k' in [k - tau_ii, k)``.
  """
  order, tau = pipedream_order(S), delay_table(S)
  d = np.zeros(S, np.int64)
  for pos, i in enumerate(order):
    k = pos + 10 * S * S + S * S  # any update of block i far from the start
    d[i] = sum(1 for kk in range(k - tau[i, i], k) if order[kk % S] == i)
  return d


# --- scalar chain (isotropic) --------------------------------------------------------------

def levin_may(t: int) -> float:
  """``a*`` with ``m_{n+1} = m_n - a m_{n-t}`` asymptotically stable iff ``0 < a < a*``."""
  return 2.0 * math.sin(math.pi / (2 * (2 * t + 1)))


def chain_equations():
  """The fixed-point equations of the scalar chain's window covariance, derived by sympy.

  Builds ``T`` on a symbolic symmetric ``(t+1) x (t+1)`` matrix for ``t = 3`` (``y^{k+1} =
  y^k - b (c y^{k-t} + g e)``, ``b ~ Bernoulli(p)``, ``E e^2 = 1``), imposes ``X = T(X)``
  and returns the residuals after substituting the Toeplitz form; used by the tests to
  confirm the equations coded in :func:`chain_second_moment` (independent derivation).
  """
  import sympy as sp
  t = 3
  p, c, g = sp.symbols("p c g", positive=True)
  r = sp.symbols(f"r0:{t + 1}")
  X = sp.Matrix(t + 1, t + 1, lambda a, b: r[abs(a - b)])
  A0 = sp.zeros(t + 1, t + 1)
  A0[0, 0] = 1
  for a in range(1, t + 1):
    A0[a, a - 1] = 1
  A1 = A0.copy()
  A1[0, t] = -c
  E = sp.zeros(t + 1, t + 1)
  E[0, 0] = g ** 2
  TX = (1 - p) * A0 * X * A0.T + p * (A1 * X * A1.T + E)
  coded = [2 * c * r[t] - c ** 2 * r[0] - g ** 2] + [
      r[m] - r[m - 1] + p * c * r[t + 1 - m] for m in range(1, t + 1)]
  return {"residual": sp.simplify(TX - X), "coded": coded, "symbols": (p, c, g, r, t)}


def chain_second_moment(t: int, p: float, c: float, g2: float = 1.0) -> np.ndarray | None:
  """Lag covariances ``r_0..r_t`` of the stationary scalar chain, or ``None`` if unstable.

  ``g2 = gamma^2 sigma^2``. ``None`` when the fixed point does not exist or its Toeplitz
  window covariance is not positive definite (then ``rho(T) >= 1``; see the module
  docstring).
  """
  if c <= 0:
    return None
  n = t + 1
  rhs = np.zeros(n)
  if t == 0:  # y^{k+1} = (1 - c) y^k w.p. p: 2c r0 - c^2 r0 = g2
    val = 2 * c - c * c
    return None if val <= 0 else np.array([g2 / val])
  rhs[0] = g2
  # Row 0: 2 c r_t - c^2 r_0 = g2; row m >= 1: r_m - r_{m-1} + p c r_{t+1-m} = 0. Built
  # as triplets (entries at the same place are summed; an exact zero is dropped), not as a
  # dense n x n matrix: the same sparse matrix at O(t) cost instead of O(t^2).
  m = np.arange(1, n)
  rows = np.concatenate([[0, 0], m, m, m])
  cols = np.concatenate([[t, 0], m, m - 1, t + 1 - m])
  vals = np.concatenate([[2 * c, -(c * c)], np.ones(t), -np.ones(t), np.full(t, p * c)])
  M = sps.csc_matrix((vals, (rows, cols)), shape=(n, n))
  M.eliminate_zeros()
  try:
    r = spla.spsolve(M, rhs)
  except RuntimeError:
    return None
  if not np.all(np.isfinite(r)) or not toeplitz_pd(r):
    return None
  return r


def toeplitz_pd(r: np.ndarray) -> bool:
  """Whether the symmetric Toeplitz matrix with first row ``r`` is positive definite.

  Levinson-Durbin: PD iff ``r_0 > 0`` and every reflection coefficient has ``|k| < 1``
  (``O(t^2)`` instead of Cholesky's ``O(t^3)``).
  """
  if not r[0] > 0:
    return False
  rho = r / r[0]
  a_buf, tmp = np.zeros(len(r)), np.empty(len(r))  # a = a_buf[:m - 1] (no reallocation)
  err = 1.0
  for m in range(1, len(r)):
    a = a_buf[:m - 1]
    k = (rho[m] - a @ rho[m - 1:0:-1]) / err if m > 1 else rho[1] / err
    if not abs(k) < 1:
      return False
    ka = np.multiply(k, a[::-1], out=tmp[:m - 1])  # a <- a - k reversed(a), then append k
    np.subtract(a, ka, out=a)
    a_buf[m - 1] = k
    err *= 1 - k * k
  return True


def _bisect(stable, lo: float, hi: float, rel: float = 1e-6) -> tuple[float, float]:
  """``(lo, hi)`` with ``stable(lo)`` and not ``stable(hi)``, ``hi / lo <= 1 + rel``.

  ``lo`` is halved until stable (at most 60 times), ``hi`` doubled until unstable.
  """
  for _ in range(60):
    if stable(lo):
      break
    hi, lo = lo, lo / 2
  else:
    raise AssertionError(f"not stable at the lower end {lo}")
  while stable(hi):
    lo, hi = hi, hi * 2
  while hi / lo > 1 + rel:
    mid = math.sqrt(lo * hi)
    lo, hi = (mid, hi) if stable(mid) else (lo, mid)
  return lo, hi


def _chains(rule: str, S: int) -> tuple[np.ndarray, float]:
  """Per-block delays of the scalar chains and the update probability ``p``."""
  if rule == "rpd":
    return np.diag(delay_table(S)).copy(), 1.0 / S
  if rule == "pipedream":
    return own_delay_pipedream(S), 1.0
  raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")


def _isotropic(rule: str, S: int, L: float, gamma: float | None, sigma: float) -> dict:
  ts, p = _chains(rule, S)
  tmax = int(ts.max())
  # mean: p gamma L < a*(t) for every block; a* decreases in t.
  mean = min(levin_may(int(t)) for t in ts) / (p * L)
  # mean-square: bisection on the block with the largest delay, then every block checked.
  ms_ok = lambda g: chain_second_moment(tmax, p, g * L) is not None
  lo, hi = _bisect(ms_ok, mean * 0.5, mean * (1 + 1e-9))
  if not all(chain_second_moment(int(t), p, lo * L) is not None for t in set(ts.tolist())):
    ms_all = lambda g: all(chain_second_moment(int(t), p, g * L) is not None
                           for t in set(ts.tolist()))
    lo, hi = _bisect(ms_all, lo, hi)
  out = {"mean_threshold": mean, "mean_square_threshold": math.sqrt(lo * hi),
         "mean_square_bracket": [lo, hi], "delays": ts.tolist(), "p": p}
  if gamma is not None:
    tot = 0.0
    for t in ts:
      r = chain_second_moment(int(t), p, gamma * L, gamma ** 2 * sigma ** 2)
      if r is None:
        tot = math.inf
        break
      tot += L ** 2 * r[0]
    out["stationary_excess"] = tot
  return out


# --- dense window maps (any H, small S) ----------------------------------------------------

def window_maps(H: np.ndarray, gamma: float, rule: str) -> tuple[list[np.ndarray], np.ndarray]:
  """The update matrices ``A_i`` on ``z = (e^k, ..., e^{k-t})`` and the noise column.

  ``A_i``: new ``e = e^k - gamma e_i sum_j H_ij e_j^{k - tau[i][j]}``, rows below shift the
  window. Returns ``(A_list indexed by block, t)``.
  """
  S = H.shape[0]
  tau = delay_table(S)
  t = int(tau.max())
  n = S * (t + 1)
  base = np.zeros((n, n))
  base[:S, :S] = np.eye(S)
  base[S:, :-S] = np.eye(n - S)
  As = []
  for i in range(S):
    A = base.copy()
    for j in range(S):
      A[i, tau[i, j] * S + j] -= gamma * H[i, j]
    As.append(A)
  return As, t


def reduced_maps(H: np.ndarray, gamma: float, rule: str):
  """The window maps on the quotient by the fixed subspace ``N = {(v, ..., v): Hv = 0}``.

  Every ``A_i`` fixes ``N`` pointwise (``H v = 0``: no update moves it), so in an
  orthonormal basis ``[N, W]`` it is block triangular with ``A_i|N = I``: its spectrum is
  ``{1 (dim N times)} + spec(W' A_i W)``, and ``W' A X A' W = (W' A W)(W' X W)(W' A W)'``
  (as ``W' A N = 0``). The gradient ``H e`` ignores ``N``. So stability and the stationary
  gradient are those of ``A_i_bar = W' A_i W`` (``W = I`` when ``H`` is invertible;
  ``rank1`` has ``dim N = S - 1``, eigenvalues at 1 for every gamma otherwise).

  Returns:
    ``(A_bar list, W, t)``.
  """
  As, t = window_maps(H, gamma, rule)
  null = sla.null_space(H)
  if null.shape[1] == 0:
    return As, np.eye(As[0].shape[0]), t
  Nb = np.tile(null, (t + 1, 1)) / math.sqrt(t + 1)
  W = sla.null_space(Nb.T)
  return [W.T @ A @ W for A in As], W, t


def _spectral_radius(A: np.ndarray) -> float:
  return float(np.max(np.abs(np.linalg.eigvals(A))))


def _period_map(As, S):
  F = np.eye(As[0].shape[0])
  for i in pipedream_order(S):
    F = As[i] @ F
  return F


def _dense_mean_radius(H, rule, g) -> float:
  """``rho(M)`` (``rpd``: ``M = (1/S) sum A_i``) or ``rho(F)`` (``pipedream``: one period),
  on the quotient of :func:`reduced_maps`."""
  As, _, _ = reduced_maps(H, g, rule)
  S = H.shape[0]
  return _spectral_radius(sum(As) / S if rule == "rpd" else _period_map(As, S))


def _dense_mean_stable(H, rule, g) -> bool:
  return _dense_mean_radius(H, rule, g) < 1 - 1e-12


def _dense_second_moment(H, rule, g, sigma=1.0):
  """Stationary window covariance ``X`` (full coordinates, ``N`` part dropped), or ``None``.

  ``rpd``: solve ``X - T(X) = Q`` and require ``X`` positive definite (Cholesky), which is
  equivalent to ``rho(T) < 1`` (module docstring). ``pipedream``: ``None`` iff ``rho(F) >=
  1`` (deterministic maps: ``rho(F kron F) = rho(F)^2``); the covariance is then averaged
  over the ``S`` phases of a period (it is only semidefinite: unchanged blocks repeat in the
  window).
  """
  As, W, t = reduced_maps(H, g, rule)
  S = H.shape[0]
  n = As[0].shape[0]
  E = [W[i] for i in range(S)]  # e_i in the reduced basis (row i of W)
  if rule == "rpd":
    T = sum(sps.kron(sps.csr_matrix(A), sps.csr_matrix(A)) for A in As) / S
    Q = sum(np.outer(e, e) for e in E) * g ** 2 * sigma ** 2 / S
  else:
    F = _period_map(As, S)
    if _spectral_radius(F) >= 1 - 1e-12:
      return None
    Q = np.zeros((n, n))
    order = pipedream_order(S)
    for pos, i in enumerate(order):
      col = E[i] * g * sigma
      for i2 in order[pos + 1:]:
        col = As[i2] @ col
      Q += np.outer(col, col)
  if rule == "rpd":
    try:
      x = spla.spsolve((sps.identity(n * n, format="csc") - T).tocsc(), Q.reshape(-1))
    except RuntimeError:
      return None
    X = x.reshape(n, n)
  else:  # X = F X F' + Q: a discrete Lyapunov equation, O(n^3)
    X = sla.solve_discrete_lyapunov(F, Q)
  X = 0.5 * (X + X.T)
  if not np.all(np.isfinite(X)):
    return None
  if rule == "rpd":
    try:
      np.linalg.cholesky(X)
    except np.linalg.LinAlgError:
      return None
  else:
    Xs, Xp = [], X
    for i in pipedream_order(S):
      Xs.append(Xp)
      Xp = As[i] @ Xp @ As[i].T + np.outer(E[i], E[i]) * g ** 2 * sigma ** 2
    X = sum(Xs) / S
  return W @ X @ W.T


def _rank1(rule: str, S: int, L: float, gamma: float | None, sigma: float) -> dict:
  if S > RANK1_MAX_S["mean"]:
    raise ValueError(f"--stages {S}: the rank1 problem has no scalar reduction; its exact "
                     f"dense computation is limited to S <= {RANK1_MAX_S['mean']} here")
  H = hessian("rank1", S, L)
  lo, hi = _bisect(lambda g: _dense_mean_stable(H, rule, g), 0.5 / (L * S), 2.0 / L, rel=1e-6)
  out = {"mean_threshold": math.sqrt(lo * hi), "mean_bracket": [lo, hi]}
  if rule == "pipedream":  # deterministic: the second moment is stable iff the mean is
    out["mean_square_threshold"] = out["mean_threshold"]
    out["mean_square_bracket"] = [lo, hi]
    out["mean_square_note"] = "deterministic recursion: equal to the mean threshold"
  elif S <= RANK1_MAX_S["mean_square"]:
    ok = lambda g: _dense_second_moment(H, rule, g) is not None
    a, b = _bisect(ok, lo * 0.5, hi, rel=1e-6)
    out["mean_square_threshold"] = math.sqrt(a * b)
    out["mean_square_bracket"] = [a, b]
  else:
    out["mean_square_threshold"] = None
    out["mean_square_note"] = (f"not computed: the dense second-moment system has "
                               f"(S (tau_max + 1))^2 unknowns; limited to S <= "
                               f"{RANK1_MAX_S['mean_square']}")
  if gamma is not None:
    if S <= RANK1_MAX_S["mean_square"] or rule == "pipedream":
      X = _dense_second_moment(H, rule, gamma, sigma)
      out["stationary_excess"] = (math.inf if X is None else
                                  float(np.trace(H @ H @ X[:S, :S])))
    else:
      out["stationary_excess"] = None
  return out


def thresholds(rule: str, S: int, problem: str = "isotropic", L: float = 1.0,
               gamma: float | None = None, sigma: float = 1.0) -> dict:
  """Exact mean and mean-square thresholds (and the stationary excess at ``gamma``).

  Returns:
    dict with ``mean_threshold``, ``mean_square_threshold`` (and brackets), and, when
    ``gamma`` is given, ``stationary_excess = lim E||grad f(x^k)||^2`` under noise level
    ``sigma`` (``inf`` when ``gamma`` is above the mean-square threshold).
  """
  if rule not in RULES:
    raise ValueError(f"unknown rule {rule!r}; known: {', '.join(RULES)}")
  if problem == "isotropic":
    return _isotropic(rule, S, L, gamma, sigma)
  if problem == "rank1":
    return _rank1(rule, S, L, gamma, sigma)
  raise ValueError(f"unknown problem {problem!r}; known: {', '.join(PROBLEMS)}")


# --- the theorem's side and measured runs --------------------------------------------------

def gamma_max_theorem(S: int, L: float = 1.0) -> dict:
  """The step-size limit ``gamma_max`` of every theorem variant at ``tau = tau_max(S)``
  (the positive root of the variant's derived condition; ``1 / L`` when ``tau = 0``)."""
  from rpd.theory import theorem
  t = int(delay_table(S).max())
  return {v: (1.0 / L if t == 0 else
              float(theorem.derive(v)["gamma_max"].subs({theorem.L: L, theorem.tau: t,
                                                             theorem.S: S})))
          for v in theorem.VARIANTS}


def stale_terms(S: int, gamma: float, sigma: float, L: float = 1.0) -> dict:
  """Each variant's stale term ``C gamma^2 tau^p`` at ``tau = tau_max(S)``, ``sigma2 = S
  sigma^2`` (from :func:`rpd.theory.theorem.derive`)."""
  from rpd.theory import theorem
  sub = {theorem.gamma: gamma, theorem.L: L, theorem.tau: int(delay_table(S).max()),
         theorem.sigma2: S * sigma ** 2, theorem.S: S}
  return {v: float(theorem.derive(v)["stale_term"].subs(sub)) for v in theorem.VARIANTS}


def engine_problem(problem: str, S: int, L: float = 1.0, sigma: float = 0.0):
  """The problem as an :class:`rpd.problems.Quadratic` (``x* = 1``, ``x^0 = 0``)."""
  import jax.numpy as jnp

  from rpd.problems import Quadratic
  H = hessian(problem, S, L)
  x_star = np.ones(S)
  b = H @ x_star
  dtype = jnp.zeros(()).dtype
  return Quadratic(A=jnp.asarray(H, dtype), b=jnp.asarray(b, dtype), S=S,
                   block_sizes=(1,) * S, L=float(L), f_star=float(-0.5 * x_star @ b),
                   sigma=float(sigma))


def engine_K(S: int, rounds: int = 64, min_mb: int = 64) -> int:
  """Iterations of a measured run: ``rounds`` times the oldest read counted in microbatches
  (``tau_max // S + 1``), at least ``min_mb`` microbatches, rounded up to a multiple of 256
  microbatches; ``K`` counts block updates (``S`` per microbatch), so ``K / 256`` is a
  multiple of ``S`` (pipedream's updates per step)."""
  r = max(rounds * (int(delay_table(S).max()) // S + 1), min_mb)
  return int(256 * S * -(-r // 256))


def _stable_run(gn_row: np.ndarray, diverged: bool, scale: float = 0.0) -> bool:
  """Stable: not diverged, and ``log ||grad f||^2`` has a negative least-squares slope over
  the second half of the 256 records (exact gradients: the dominant mode decays
  geometrically). A fitted rate instead of critical_gamma's two end points: near the
  threshold the dominant modes oscillate (complex roots) and decay or grow slowly, so two
  single samples compare phases; the fit averages over many (checked against the exact
  thresholds in tests/test_stability_exact.py). A run that dips to rounding level
  (``1e4 eps^2`` of ``max(g_0, scale)``, ``eps`` of the records' dtype; ``scale = L^2
  ||x^0||^2`` sets the absolute rounding level of the gradient) in the second half is stable."""
  g = np.asarray(gn_row)
  eps = float(np.finfo(g.dtype).eps) if np.issubdtype(g.dtype, np.floating) else 2.2e-16
  g = g.astype(float)
  if diverged or not np.all(np.isfinite(g)):
    return False
  if g[len(g) // 2:].min() <= 1e4 * eps ** 2 * max(g[0], scale):  # rounding level: the
    return True  # fit would see a flat floor; a growing run from a generic start never dips
  y = np.log(np.maximum(g[len(g) // 2:], 1e-300))
  return bool(np.polyfit(np.arange(len(y)), y, 1)[0] < 0)


def measured_threshold(rule: str, S: int, problem: str = "isotropic", L: float = 1.0,
                       lo: float = 1e-3, hi: float = 4.0, grid: int = 12, rounds: int = 3,
                       K_rounds: int = 64, seed: int = 0, widen: int = 2,
                       min_mb: int = 64) -> dict:
  """Divergence threshold of engine runs with exact gradients (vectorised bisection).

  As ``experiments/critical_gamma.py``: a geometric grid of gammas as one
  :func:`rpd.engine.sweep`; each round refines between the largest stable gamma below the
  first unstable one and that one (stability: :func:`_stable_run`); if the first grid is all
  stable or all unstable, the range is widened 4x each side (``widen`` times). The start
  range may come from anywhere (:func:`report` puts it around the exact thresholds): only the
  runs decide the bracket. Start: ``x* + N(0, I)`` (seeded). Returns the final
  bracket and its geometric mean. One path per gamma: for ``rpd`` this measures the pathwise
  (almost-sure) threshold, which is at least the mean-square one (Lyapunov exponent <=
  (1/2) log rho(T)), and not ordered with the mean one in general.
  """
  from rpd.engine import sweep
  from rpd.rules import get_rule
  pb = engine_problem(problem, S, L, 0.0)
  rule_ = get_rule(rule, S)
  K = engine_K(S, K_rounds, min_mb)
  # a generic start excites every mode (from x^0 = 0 the symmetric start e = -1 leaves the
  # unstable mode of rank1 at zero up to rounding)
  x0 = 1.0 + np.random.default_rng(seed).standard_normal((S, 1))
  results: list[tuple[float, bool]] = []
  a = b = None
  for rnd in range(rounds):
    gs = (np.geomspace(lo, hi, grid) if rnd == 0 else np.geomspace(a, b, grid + 2)[1:-1])
    res = sweep(pb, rule_, gammas=gs, seeds=np.full(len(gs), seed), K=K, record_every=K // 256,
                x0=x0)
    gn = np.asarray(res.metrics["grad_norm_sq"])
    for n, g in enumerate(gs):
      results.append((float(g), _stable_run(gn[n], bool(res.diverged[n]),
                                            L ** 2 * float(np.sum(x0 ** 2)))))
    results.sort()
    unstable = [g for g, ok in results if not ok]
    b = min(unstable) if unstable else None
    stable = [g for g, ok in results if ok and (b is None or g < b)]
    a = max(stable) if stable else None
    if a is None or b is None:
      if rnd == 0 and widen > 0:  # the range missed the threshold: widen it and restart
        return measured_threshold(rule, S, problem, L, lo / 4, hi * 4, grid, rounds, K_rounds,
                                  seed, widen - 1, min_mb)
      break
  est = None if (a is None or b is None) else math.sqrt(a * b)
  return {"measured_threshold": est, "bracket": [a, b], "K": K, "seed": seed}


def measured_excess(rule: str, S: int, problem: str, gamma: float, sigma: float,
                    L: float = 1.0, seeds: int = 4, K_rounds: int = 256) -> dict:
  """Time and seed average of ``||grad f(x^k)||^2`` over the second half of noisy runs."""
  from rpd.engine import sweep
  from rpd.rules import get_rule
  pb = engine_problem(problem, S, L, sigma)
  K = engine_K(S, K_rounds)
  rec = K // 64
  res = sweep(pb, get_rule(rule, S), gammas=np.full(seeds, gamma), seeds=np.arange(seeds),
              K=K, record_every=rec, x0=np.ones((S, 1)))
  gn = np.asarray(res.metrics["grad_norm_sq"])[:, 1:]
  half = gn[:, gn.shape[1] // 2:]
  per_seed = half.mean(1)
  return {"measured_excess": float(per_seed.mean()),
          "sem": float(per_seed.std(ddof=1) / math.sqrt(seeds)) if seeds > 1 else None,
          "K": K, "seeds": seeds}


def report(rule: str, S: int, problem: str = "isotropic", L: float = 1.0,
           gamma: float | None = None, sigma: float = 0.1, measure: bool = True,
           seeds: int = 4) -> dict:
  """Everything ``rpd theory stability`` prints (see :mod:`rpd.cli.theory`)."""
  ex = thresholds(rule, S, problem, L)
  if gamma is None:
    gamma = 0.25 * ex["mean_square_threshold"] if ex["mean_square_threshold"] else None
  out = {"rule": rule, "S": S, "problem": problem, "L": L,
         "tau_max": int(delay_table(S).max()), **ex,
         "gamma_max": gamma_max_theorem(S, L), "measured_threshold": None}
  if measure:
    ms = ex["mean_square_threshold"] or ex["mean_threshold"]
    m = measured_threshold(rule, S, problem, L, lo=0.85 * min(ms, ex["mean_threshold"]),
                           hi=1.2 * ex["mean_threshold"], grid=6, rounds=2, K_rounds=64,
                           min_mb=max(16384 // S, 1))  # at least 16384 block updates
    out["measured_threshold"] = m["measured_threshold"]
    out["measured_bracket"] = m["bracket"]
    out["measured_K"] = m["K"]
  if gamma is not None:
    st = thresholds(rule, S, problem, L, gamma=gamma, sigma=sigma)
    out["excess"] = {"gamma": gamma, "sigma": sigma, "sigma2": S * sigma ** 2,
                     "exact": st.get("stationary_excess"),
                     "bound_stale_term": stale_terms(S, gamma, sigma, L)}
    if measure:
      out["excess"].update(measured_excess(rule, S, problem, gamma, sigma, L, seeds,
                                           K_rounds=32))
  return out
