"""A bundled text source with a known entropy rate: a random sparse Markov chain of order k.

The default corpus of the small language model (:mod:`rpd.problems.charlm`) needs no
download and its best achievable loss is known exactly.

Source. ``V`` symbols, order ``k``; a *context* is the last ``k`` symbols, encoded as
``c = sum_{t} x_{t-k+t'} V^{k-1-t'}`` in ``0..V^k - 1``. Each context ``c`` allows
``branching`` next symbols (drawn without replacement) with Dirichlet(``alpha``) weights, mixed
with the uniform distribution with weight ``eps`` so that every transition has positive
probability (the chain on contexts is then irreducible and aperiodic)::

    P[c, v] = (1 - eps) * q_c(v) + eps / V

Entropy rate. The context process ``c_t`` is a Markov chain on ``V^k`` states with
``c -> (c * V + v) mod V^k`` with probability ``P[c, v]``. Its stationary distribution ``pi``
(the eigenvector of eigenvalue 1, computed by power iteration to machine precision) gives the
entropy rate in nats::

    h = - sum_c pi(c) sum_v P[c, v] log P[c, v]

which is the smallest expected next-symbol cross-entropy of any predictor that sees at least
the last ``k`` symbols (and the limit of ``H(X_1..X_n) / n``).

Sampling. :meth:`MarkovSource.sample` draws ``n_chains`` independent stationary sequences
(the first context from ``pi``), vectorised over chains; numpy, seeded, deterministic.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np


@dataclasses.dataclass(frozen=True)
class MarkovSource:
  """Random sparse order-``k`` Markov source over ``V`` symbols (see the module docstring).

  Attributes:
    V: alphabet size.
    order: Markov order ``k`` (context length).
    branching: number of favoured next symbols per context.
    alpha: Dirichlet concentration of the favoured weights.
    eps: weight of the uniform mixture (``> 0`` for ergodicity).
    seed: seed of the transition table.
  """

  V: int = 16
  order: int = 2
  branching: int = 3
  alpha: float = 1.0
  eps: float = 0.02
  seed: int = 0

  def __post_init__(self):
    if self.V < 2 or self.order < 1 or not 1 <= self.branching <= self.V:
      raise ValueError(f"bad Markov source {self}")
    if not 0 < self.eps <= 1:
      raise ValueError(f"eps must be in (0, 1], got {self.eps}")

  @property
  def n_contexts(self) -> int:
    """Number of contexts ``V^k``."""
    return self.V ** self.order

  @functools.cached_property
  def P(self) -> np.ndarray:
    """Transition table ``P[c, v]``, shape ``(V^k, V)``, rows sum to 1."""
    rng = np.random.default_rng(self.seed)
    C, V = self.n_contexts, self.V
    q = np.zeros((C, V))
    for c in range(C):
      support = rng.choice(V, size=self.branching, replace=False)
      q[c, support] = rng.dirichlet(np.full(self.branching, self.alpha))
    return (1 - self.eps) * q + self.eps / V

  def next_context(self, c: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Context after emitting ``v`` in context ``c``."""
    return (c * self.V + v) % self.n_contexts

  @functools.cached_property
  def stationary(self) -> np.ndarray:
    """Stationary distribution ``pi`` of the context chain (power iteration, tol 1e-15)."""
    C = self.n_contexts
    pi = np.full(C, 1.0 / C)
    cs = np.repeat(np.arange(C), self.V)
    dest = self.next_context(cs, np.tile(np.arange(self.V), C))
    for _ in range(100000):
      new = np.bincount(dest, weights=(pi[:, None] * self.P).ravel(), minlength=C)
      if np.max(np.abs(new - pi)) < 1e-15:
        return new / new.sum()
      pi = new
    raise RuntimeError("power iteration did not converge")

  @functools.cached_property
  def entropy_rate(self) -> float:
    """``h = -sum_c pi(c) sum_v P[c, v] log P[c, v]`` in nats per symbol."""
    P = self.P
    return float(-np.sum(self.stationary[:, None] * P * np.log(P)))

  def sample(self, n_chains: int, length: int, seed: int) -> np.ndarray:
    """``n_chains`` independent stationary sequences of ``length`` symbols, int32.

    The first ``k`` symbols are the digits of a context drawn from ``pi``; each next symbol is
    drawn from ``P[context]`` by inverse-CDF sampling.
    """
    rng = np.random.default_rng(seed)
    k, V = self.order, self.V
    c = rng.choice(self.n_contexts, size=n_chains, p=self.stationary)
    out = np.zeros((n_chains, max(length, k)), dtype=np.int32)
    for t in range(k):
      out[:, t] = (c // V ** (k - 1 - t)) % V
    cdf = np.cumsum(self.P, axis=1)
    cdf[:, -1] = 1.0
    u = rng.random((n_chains, max(length - k, 0)))
    for t in range(k, length):
      v = (u[:, t - k, None] > cdf[c]).sum(axis=1).astype(np.int32)
      out[:, t] = v
      c = self.next_context(c, v)
    return out[:, :length]

  def contexts_of(self, windows_NxT: np.ndarray) -> np.ndarray:
    """Context index of the last ``k`` symbols of each window (length ``T >= k``)."""
    k, V = self.order, self.V
    tail = windows_NxT[:, -k:].astype(np.int64)
    return (tail * V ** np.arange(k - 1, -1, -1)).sum(axis=1)

  def true_nll(self, windows_NxT: np.ndarray, next_N: np.ndarray) -> np.ndarray:
    """``-log P(next | window)`` under the source (per window, nats)."""
    return -np.log(self.P[self.contexts_of(windows_NxT), next_N])
