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

Exactness. The window ``z^k = (1, x^k, delta^k, ..., delta^{k-t+1})`` (``t = max T``,
increments ``delta^m = x^m - x^{m-1}``, zero before iteration 0) evolves as ``z^{k+1} =
A_{k,i_k} z^k + gamma F_{i_k} e^k``, so ``Z^k = E z^k z^k'`` obeys ``Z^{k+1} = E_i (A_{k,i}
Z^k A_{k,i}' + gamma^2 F_i Sigma F_i')``, exactly (no sampling). Increments rather than past
iterates: ``x^k - x_hat^k`` is then a sum of entries of ``z`` and never the difference of two
large nearly equal numbers. From ``Z^k``:

* ``D_k = E||x^k - x_hat^k||^2 = E_i tr(P_{k,i} Z^k P_{k,i}')`` (the lemma's left side),
* ``G_k = E||grad_{i_k} f(x_hat^k)||^2 = E_i tr(Q_{k,i} Z^k Q_{k,i}')``,
* ``N_k = E||grad f(x^k)||^2``,
* ``D_own_k = E||(x^k - x_hat^k)_{i_k}||^2`` (the chosen block's own stale error only;
  :mod:`rpd.theory.first_order`),
* ``Dg_k = E||grad_{i_k} f(x^k) - grad_{i_k} f(x_hat^k)||^2 = E_i ||(H P_{k,i} z)_i||^2``.

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


def _maps(H, c, Tk, parts, t):
  """Per block ``i``: ``(Q_i, P_i)`` for one table ``Tk`` in the increment coordinates.

  ``z = (1, x^k, delta^k, ..., delta^{k-t+1})`` with ``delta^m = x^m - x^{m-1}`` (zero for
  ``m <= 0``), so ``x^{k-lag} = x^k - sum_{m<lag} delta^{k-m}``: ``Q_i z = grad_i f(x_hat)``
  and ``P_i z = x^k - x_hat^k`` (a sum of increments: no cancellation against ``x^k``).
  """
  d = H.shape[0]
  S = len(parts)
  n = 1 + d * (t + 1)
  dl = lambda m, cols: 1 + d + m * d + cols  # delta^{k-m}
  out = []
  for i in range(S):
    bi = parts[i]
    Q = np.zeros((bi.size, n))
    Q[:, 0] = -c[bi]
    Q[:, 1:1 + d] = H[bi]
    P = np.zeros((d, n))
    for j in range(S):
      bj = parts[j]
      for m in range(int(Tk[i, j])):
        P[bj, dl(m, bj)] = 1.0
        Q[:, dl(m, bj)] -= H[np.ix_(bi, bj)]
    out.append((Q, P))
  return out


def stale_moments(H, c, Sigma, T, gamma, x0, K, order: str = "uniform") -> dict:
  """Exact ``D_k``, ``G_k``, ``N_k`` for ``k = 0..K`` (see the module docstring).

  The state is ``z^k = (1, x^k, delta^k, ..., delta^{k-t+1})`` (increments: reads before
  iteration 0 see ``x^0`` because ``delta^m = 0`` for ``m <= 0``); one step is
  ``z^{k+1} = B z^k + F_i Delta`` with ``Delta = -gamma (Q_i z^k + e_i)`` (``B`` keeps ``x``,
  shifts the increments and zeroes the newest; ``F_i`` adds ``Delta`` to block ``i`` of
  ``x`` and of the newest increment), so ``E z z'`` evolves exactly.

  Args:
    H: ``(d, d)`` symmetric Hessian; c: ``(d,)`` linear term (``None``: 0); Sigma: ``(d, d)``
      noise covariance (PSD); T: ``(S, S)`` or ``(>= K+1, S, S)`` nonnegative integer
      delays; gamma: step size; x0: ``(d,)`` start; K: last iteration; order: ``uniform`` or
      ``cyclic``.

  Returns:
    dict with arrays ``D``, ``D_own``, ``Dg``, ``G``, ``N`` (length ``K + 1``), ``tau``
    (max delay), ``sigma2``
    (``tr Sigma``), ``S``.
  """
  H = np.asarray(H, float)
  d = H.shape[0]
  c = np.zeros(d) if c is None else np.asarray(c, float)
  Sigma = np.asarray(Sigma, float)
  Ts = _tables(T, K).astype(int)
  S = Ts.shape[1]
  parts = blocks(d, S)
  t = max(int(Ts.max()), 1)
  n = 1 + d * (t + 1)
  z0 = np.zeros(n)
  z0[0] = 1.0
  z0[1:1 + d] = np.asarray(x0, float)
  Z = np.outer(z0, z0)
  # B z: keep (1, x), delta^{k-m} -> slot m + 1, slot 0 -> 0
  keep = np.arange(1 + d + d * (t - 1))
  dest = np.concatenate([np.arange(1 + d), 1 + 2 * d + np.arange(d * (t - 1))])
  R = np.zeros((d, n))
  R[:, 0] = -c
  R[:, 1:1 + d] = H
  D, G, N, Do, Dg = (np.zeros(K + 1) for _ in range(5))
  cache = {}
  quad = lambda M: float(np.einsum("ij,ij->", M @ Z, M))  # tr(M Z M')
  for k in range(K + 1):
    key = Ts[k].tobytes()
    if key not in cache:
      cache[key] = _maps(H, c, Ts[k], parts, t)
    maps = cache[key]
    sel = range(S) if order == "uniform" else (k % S,)
    w = 1.0 / len(sel)
    D[k] = w * sum(quad(maps[i][1]) for i in sel)
    Do[k] = w * sum(quad(maps[i][1][parts[i]]) for i in sel)
    Dg[k] = w * sum(quad(H[parts[i]] @ maps[i][1]) for i in sel)
    G[k] = w * sum(quad(maps[i][0]) for i in sel)
    N[k] = quad(R)
    if k == K:
      break
    BZB = np.zeros_like(Z)
    BZB[np.ix_(dest, dest)] = Z[np.ix_(keep, keep)]
    acc = np.zeros_like(Z)
    for i in sel:
      Q = maps[i][0]
      rows = np.concatenate([1 + parts[i], 1 + d + parts[i]])  # x block i, newest delta
      QZ = Q @ Z
      M = np.zeros((parts[i].size, n))
      M[:, dest] = QZ[:, keep]  # Q Z B'
      C = gamma ** 2 * (QZ @ Q.T + Sigma[np.ix_(parts[i], parts[i])])  # E Delta Delta'
      M2 = np.vstack([M, M])
      acc[rows] -= gamma * M2
      acc[:, rows] -= gamma * M2.T
      acc[np.ix_(rows, rows)] += np.block([[C, C], [C, C]])
    Z = BZB + w * acc
  return {"D": D, "D_own": Do, "Dg": Dg, "G": G, "N": N, "tau": int(Ts.max()),
          "sigma2": float(np.trace(Sigma)), "S": S}


def window_sums(G: np.ndarray, tau: int) -> np.ndarray:
  """``W_k = sum_{l=max(0,k-tau)}^{k-1} G_l`` for every ``k``."""
  # summed slice by slice: a difference of cumulative sums loses digits when G grows
  return np.array([G[max(0, k - tau):k].sum() for k in range(G.size)])


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
