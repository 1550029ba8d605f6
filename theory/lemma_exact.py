"""Exact ``E||x^k - x_hat^k||^2`` of stale block SGD on a quadratic, any ``d``, any delays.

Model. ``f(x) = 1/2 x'Hx - c'x`` with any symmetric ``H`` (indefinite allowed: the
stale-read lemmas need no convexity), ``x in R^d`` split into ``S`` contiguous blocks by
:func:`blocks` (``S`` = rows of the delay table; ``d = S`` gives one coordinate per block;
for ``d > S`` the first ``d mod S`` blocks get ``floor(d/S) + 1`` coordinates, the others
``floor(d/S)``, as :func:`numpy.array_split`). The oracle adds ``e^k`` with ``E e^k = 0``,
``E e^k e^k' = Sigma`` (independent over ``k``); the update of block ``i`` uses block ``i``
of it. Iteration ``k``:

    i_k ~ U{1..S} (``order="uniform"``, RPD)  or  i_k = k mod S (``order="cyclic"``),
    block j of x_hat^k = x_j^{max(0, k - T_k[i_k, j])},
    x^{k+1} = x^k - gamma U_{i_k} (H x_hat^k - c + e^k)_{i_k},

with ``T_k = T`` for an ``S x S`` table or ``T_k = T[k]`` for a ``(K+1, S, S)`` array
(time-varying delays).

Exactness. The window ``z^k = (1, x^k, x^{k-1}, ..., x^{k-t})`` (``t = max T``; lags
before iteration 0 hold ``x^0``) evolves as ``z^{k+1} = A_{k,i_k} z^k + gamma B_{i_k} e^k``,
so ``Z^k = E z^k z^k'`` obeys ``Z^{k+1} = E_i (A_{k,i} Z^k A_{k,i}' + gamma^2 B_i Sigma
B_i')``, exactly (no sampling). From ``Z^k``:

* ``D_k = E||x^k - x_hat^k||^2 = E_i tr(P_{k,i} Z^k P_{k,i}')`` (the lemma's left side),
* ``G_k = E||grad_{i_k} f(x_hat^k)||^2 = E_i tr(Q_{k,i} Z^k Q_{k,i}')``,
* ``N_k = E||grad f(x^k)||^2``.

The lemma's right side at ``k`` uses ``W_k = sum_{l=max(0,k-tau)}^{k-1} G_l``,
``tau = max T`` and ``sigma2 = tr Sigma`` in each variant's one formula
(:func:`rpd.theory.theorem.stale_read_fn`). The cyclic order is outside assumption A4
(uniform ``i_k``): its bounds are printed for comparison only.
"""
from __future__ import annotations

import numpy as np

ORDERS = ("uniform", "cyclic")


def blocks(d: int, S: int) -> list[np.ndarray]:
  """The ``S`` contiguous coordinate blocks of ``R^d`` (``d >= S``), as ``np.array_split``."""
  return np.array_split(np.arange(d), S)


def _tables(T: np.ndarray, K: int) -> np.ndarray:
  T = np.asarray(T)
  if T.ndim == 2:
    return np.broadcast_to(T, (K + 1,) + T.shape)
  return T[:K + 1]


def _maps(H, c, Tk, gamma, parts, t):
  """Per block ``i``: ``(A_i, Q_i, P_i)`` for one table ``Tk`` (window dimension ``n``)."""
  d = H.shape[0]
  S = len(parts)
  n = 1 + d * (t + 1)
  xs = lambda lag, cols: 1 + lag * d + cols
  base = np.zeros((n, n))
  base[0, 0] = 1.0
  base[xs(0, np.arange(d)), xs(0, np.arange(d))] = 1.0
  for lag in range(1, t + 1):
    base[xs(lag, np.arange(d)), xs(lag - 1, np.arange(d))] = 1.0
  out = []
  for i in range(S):
    bi = parts[i]
    # rows: grad_i f at the read point, as a linear map of z
    Q = np.zeros((bi.size, n))
    Q[:, 0] = -c[bi]
    P = np.zeros((d, n))
    P[np.arange(d), xs(0, np.arange(d))] = 1.0
    for j in range(S):
      bj = parts[j]
      lag = int(Tk[i, j])
      Q[:, xs(lag, bj)] += H[np.ix_(bi, bj)]
      P[bj, xs(lag, bj)] -= 1.0
    A = base.copy()
    A[xs(0, bi)] -= gamma * Q
    out.append((A, Q, P))
  return out


def stale_moments(H, c, Sigma, T, gamma, x0, K, order: str = "uniform") -> dict:
  """Exact ``D_k``, ``G_k``, ``N_k`` for ``k = 0..K`` (see the module docstring).

  Args:
    H: ``(d, d)`` symmetric Hessian; c: ``(d,)`` linear term; Sigma: ``(d, d)`` noise
      covariance (PSD); T: ``(S, S)`` or ``(>= K+1, S, S)`` nonnegative integer delays;
    gamma: step size; x0: ``(d,)`` start; K: last iteration; order: ``uniform`` or
      ``cyclic``.

  Returns:
    dict with arrays ``D``, ``G``, ``N`` (length ``K + 1``), ``tau`` (max delay), ``sigma2``
    (``tr Sigma``), ``S``.
  """
  H = np.asarray(H, float)
  d = H.shape[0]
  c = np.zeros(d) if c is None else np.asarray(c, float)
  Sigma = np.asarray(Sigma, float)
  Ts = _tables(T, K).astype(int)
  S = Ts.shape[1]
  parts = blocks(d, S)
  t = int(Ts.max())
  n = 1 + d * (t + 1)
  z0 = np.concatenate([[1.0], np.tile(np.asarray(x0, float), t + 1)])
  Z = np.outer(z0, z0)
  noise = []
  for bi in parts:
    Nz = np.zeros((n, n))
    Nz[np.ix_(1 + bi, 1 + bi)] = gamma ** 2 * Sigma[np.ix_(bi, bi)]
    noise.append(Nz)
  R = np.zeros((d, n))
  R[:, 0] = -c
  R[:, 1:1 + d] = H
  # base z = (1, x^k, x^k, x^{k-1}, ..., x^{k-t+1}): a gather; A_i = base - gamma E_i Q_i.
  idx = np.concatenate([np.arange(1 + d), 1 + np.arange(d * t)])
  D, G, N = np.zeros(K + 1), np.zeros(K + 1), np.zeros(K + 1)
  cache = {}
  quad = lambda M: float(np.einsum("ij,ij->", M @ Z, M))  # tr(M Z M')
  for k in range(K + 1):
    key = Ts[k].tobytes()
    if key not in cache:
      cache[key] = _maps(H, c, Ts[k], gamma, parts, t)
    maps = cache[key]
    sel = range(S) if order == "uniform" else (k % S,)
    w = 1.0 / len(sel)
    D[k] = w * sum(quad(maps[i][2]) for i in sel)
    G[k] = w * sum(quad(maps[i][1]) for i in sel)
    N[k] = quad(R)
    if k == K:
      break
    Zb = Z[np.ix_(idx, idx)]  # base Z base'
    acc = np.zeros_like(Z)
    for i in sel:
      Q = maps[i][1]
      rows = 1 + parts[i]
      QZ = Q @ Z
      M = QZ[:, idx]  # Q_i Z base'  (|b_i| x n)
      C = QZ @ Q.T
      acc[rows] -= gamma * M
      acc[:, rows] -= gamma * M.T
      acc[np.ix_(rows, rows)] += gamma ** 2 * C
      acc += noise[i]
    Z = Zb + w * acc
  return {"D": D, "G": G, "N": N, "tau": t, "sigma2": float(np.trace(Sigma)), "S": S}


def window_sums(G: np.ndarray, tau: int) -> np.ndarray:
  """``W_k = sum_{l=max(0,k-tau)}^{k-1} G_l`` for every ``k``."""
  cs = np.concatenate([[0.0], np.cumsum(G)])
  k = np.arange(G.size)
  return cs[k] - cs[np.maximum(0, k - tau)]


def lemma_bounds(m: dict, gamma: float, variants=None) -> dict:
  """Each variant's right side at every ``k``: its one formula at ``(gamma, tau, S, W_k,
  sigma2)`` (:func:`rpd.theory.theorem.stale_read_fn`)."""
  from rpd.theory import theorem
  W = window_sums(m["G"], m["tau"])
  out = {}
  for v in variants or theorem.VARIANTS:
    fn = theorem.stale_read_fn(v)
    out[v] = np.array([fn(gamma, m["tau"], m["S"], w, m["sigma2"]) for w in W], float)
  return out
