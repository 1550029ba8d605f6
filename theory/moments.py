"""Exact first and second moments of RPD on quadratics, over long horizons (no sampling).

Model. ``S`` blocks of one coordinate, ``f(x) = 1/2 x'Hx - c'x`` with any symmetric ``H``
(indefinite allowed: the stale-read lemmas need no convexity), oracle ``g(x; xi) = Hx - c +
s * xi`` with ``E xi = 0``, ``E xi xi' = I`` (per block ``sigma_j^2 = s_j^2``, ``sigma2 =
sum_j s_j^2``), ``i_k ~ U{1..S}``, reads ``x_hat^k_j = x_j^{max(0, k - tau[i_k][j])}`` from
a delay table (assumption A6 holds: delays depend on ``i_k`` only).

Exactness. The augmented window ``z^k = (1, x^k, x^{k-1}, ..., x^{k-t})`` (``t`` the largest
delay; entries before iteration 0 are ``x^0``, which is the convention "reads before 0 see
``x^0``") evolves as ``z^{k+1} = A_{i_k} z^k + gamma s_{i_k} xi_{i_k} e_{x_i}``, with
``A_i`` affine in ``z`` through its constant coordinate. Hence ``Z^k = E z^k z^k'`` obeys
``Z^{k+1} = (1/S) sum_i (A_i Z^k A_i' + gamma^2 s_i^2 e e')`` exactly, and every quantity
of the proof at iteration ``k`` is a quadratic form in ``Z^k``:

* ``D_k = E||x^k - x_hat^k||^2 = (1/S) sum_i tr(P_i Z^k P_i')``;
* ``G_k = E||grad_{i_k} f(x_hat^k)||^2 = (1/S) sum_i q_i' Z^k q_i``;
* ``N_k = E||grad f(x^k)||^2 = tr(R Z^k R')``.

This replaces enumerating ``(S 2^S)^K`` outcomes (``K <= 5`` in practice) by ``K``
matrix products, so horizons far beyond ``tau_max`` (every read stale) are exact.
"""
from __future__ import annotations

import numpy as np


def window_matrices(H, c, tau, gamma):
  """``A_i`` (affine window maps), ``P_i`` (``x^k - x_hat``), ``q_i`` (block gradient at the
  read point), ``R`` (full gradient at ``x^k``), and the window length ``t``."""
  S = H.shape[0]
  tau = np.asarray(tau, int)
  t = int(tau.max())
  n = 1 + S * (t + 1)
  xs = lambda lag, j: 1 + lag * S + j  # index of x_j^{k - lag}
  base = np.zeros((n, n))
  base[0, 0] = 1.0
  for j in range(S):
    base[xs(0, j), xs(0, j)] = 1.0
  for lag in range(1, t + 1):
    for j in range(S):
      base[xs(lag, j), xs(lag - 1, j)] = 1.0
  As, Ps, qs = [], [], []
  for i in range(S):
    q = np.zeros(n)
    q[0] = -c[i]
    for j in range(S):
      q[xs(tau[i, j], j)] += H[i, j]
    A = base.copy()
    A[xs(0, i)] -= gamma * q
    P = np.zeros((S, n))
    for j in range(S):
      P[j, xs(0, j)] += 1.0
      P[j, xs(tau[i, j], j)] -= 1.0
    As.append(A)
    Ps.append(P)
    qs.append(q)
  R = np.zeros((S, n))
  R[:, 0] = -c
  for j in range(S):
    R[:, xs(0, j)] = H[:, j]
  return As, Ps, qs, R, t


def trajectory(H, c, s, tau, gamma, x0, K):
  """Exact ``D_k``, ``G_k``, ``N_k`` for ``k = 0..K`` (arrays of length ``K + 1``)."""
  H = np.asarray(H, float)
  S = H.shape[0]
  As, Ps, qs, R, t = window_matrices(H, np.asarray(c, float), tau, gamma)
  z0 = np.concatenate([[1.0], np.tile(np.asarray(x0, float), t + 1)])
  Z = np.outer(z0, z0)
  D, G, N = np.zeros(K + 1), np.zeros(K + 1), np.zeros(K + 1)
  for k in range(K + 1):
    D[k] = np.mean([np.trace(P @ Z @ P.T) for P in Ps])
    G[k] = np.mean([q @ Z @ q for q in qs])
    N[k] = np.trace(R @ Z @ R.T)
    if k == K:
      break
    Zn = np.zeros_like(Z)
    for i, A in enumerate(As):
      Zn += A @ Z @ A.T
      Zn[1 + i, 1 + i] += gamma ** 2 * s[i] ** 2
    Z = Zn / S
  return {"D": D, "G": G, "N": N, "t": t}


def simulate(H, c, s, tau, gamma, x0, K, n_paths, seed=0):
  """Monte Carlo of the same quantities (Rademacher noise), for testing :func:`trajectory`."""
  rng = np.random.default_rng(seed)
  H = np.asarray(H, float)
  S = H.shape[0]
  tau = np.asarray(tau, int)
  X = np.zeros((n_paths, K + 1, S))
  X[:, 0] = x0
  D, G, N = np.zeros(K + 1), np.zeros(K + 1), np.zeros(K + 1)
  rows = np.arange(n_paths)
  for k in range(K + 1):
    i = rng.integers(S, size=n_paths)
    xhat = np.stack([X[rows, np.maximum(0, k - tau[i, j]), j] for j in range(S)], 1)
    D[k] = np.mean(np.sum((X[:, k] - xhat) ** 2, 1))
    gi = np.sum(H[i] * xhat, 1) - c[i]
    G[k] = np.mean(gi ** 2)
    N[k] = np.mean(np.sum((X[:, k] @ H - c) ** 2, 1))
    if k == K:
      break
    X[:, k + 1] = X[:, k]
    X[rows, k + 1, i] -= gamma * (gi + s[i] * rng.choice([-1.0, 1.0], size=n_paths))
  return {"D": D, "G": G, "N": N}
