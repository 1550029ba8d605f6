"""Quadratic ``f(x) = 1/2 x'Ax - b'x`` with a controlled spectrum and additive gradient noise.

Stochastic gradient: ``g(x; xi) = A x - b + sigma * xi``, ``xi ~ N(0, I_d)``, so
``E||g - grad f||^2 = sigma^2 d`` exactly (``sigma = 0``: the gradient is exact).
``L = lambda_max(A)``; ``f* = -1/2 b' A^{-1} b`` when ``A`` is positive definite.
``A`` is held dense (``d x d``) or, for large ``d``, as its diagonal.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import jax
import jax.numpy as jnp
from flax import struct

from rpd.problems.base import Problem, even_block_sizes


@struct.dataclass
class Quadratic(Problem):
  """``f(x) = 1/2 x'Ax - b'x`` (see the module docstring).

  Attributes:
    A: ``(d, d)`` symmetric matrix, or ``(d,)`` its diagonal when ``diagonal``.
    b: ``(d,)``.
    S, block_sizes, L, f_star: see :class:`rpd.problems.base.Problem`.
    sigma: gradient noise level (``0`` gives exact gradients). A data field, not a static
      one: a quadratic with exact gradients and one with noisy gradients of the same shapes
      run through the same compiled program (the noise is drawn and scaled by ``sigma = 0``;
      the gradient is then exact, the same numbers up to the sign of a zero).
    diagonal: whether ``A`` is stored as its diagonal.
  """

  A: jax.Array
  b: jax.Array
  S: int = struct.field(pytree_node=False)
  block_sizes: tuple = struct.field(pytree_node=False)
  L: float | None = struct.field(pytree_node=False, default=None)
  f_star: float | None = struct.field(pytree_node=False, default=None)
  sigma: Any = 0.0
  diagonal: bool = struct.field(pytree_node=False, default=False)
  name: str = struct.field(pytree_node=False, default="quadratic")

  @property
  def sigma2(self) -> float:
    """``E||g(x; xi) - grad f(x)||^2 = sigma^2 d`` (exact)."""
    return float(self.sigma) ** 2 * self.d

  def _Ax(self, x_d):
    return self.A * x_d if self.diagonal else self.A @ x_d

  def init(self, key):
    return jnp.zeros((self.S, self.D), self.b.dtype)

  def sample(self, key):
    return jax.random.normal(key, (self.d,), self.b.dtype)

  def full_loss(self, x_SxD):
    x = self.flat(x_SxD)
    return 0.5 * x @ self._Ax(x) - self.b @ x

  def loss(self, x_SxD, batch):
    """``f(x) + sigma xi'x``: its gradient is the stochastic gradient above."""
    x = self.flat(x_SxD)
    return 0.5 * x @ self._Ax(x) - self.b @ x + self.sigma * batch @ x

  def full_grad(self, x_SxD):
    return self.blocks(self._Ax(self.flat(x_SxD)) - self.b)

  def grad(self, x_SxD, batch):
    g = self._Ax(self.flat(x_SxD)) - self.b
    return self.blocks(g + self.sigma * batch)


def spectrum(d: int, L: float, mu: float, kind: str = "geometric") -> np.ndarray:
  """``d`` eigenvalues from ``mu`` to ``L``, geometrically or linearly spaced (descending)."""
  if d == 1:
    return np.array([L])
  if kind == "geometric":
    return np.geomspace(L, mu, d)
  if kind == "linear":
    return np.linspace(L, mu, d)
  raise ValueError(f"unknown spectrum kind {kind!r}; use geometric or linear")


def make_quadratic(S: int, *, d: int = 64, L: float = 1.0, mu: float = 1e-2,
                   noise: float = 0.0, seed: int = 0, diagonal: bool | None = None,
                   spectrum_kind: str = "geometric", dtype=None) -> Quadratic:
  """A random quadratic with eigenvalues in ``[mu, L]`` and minimizer ``x* ~ N(0, I/d)``.

  ``A = Q diag(lambda) Q'`` with ``Q`` Haar-random (dense) or ``A = diag(lambda)`` with the
  eigenvalues in a random order (diagonal; the default for ``d > 2048``); ``b = A x*``,
  ``f* = -1/2 x*'A x*``.

  Args:
    S: number of blocks (``1 <= S <= d``).
    d: dimension.
    L, mu: largest and smallest eigenvalue (``0 < mu <= L``).
    noise: gradient noise ``sigma >= 0``.
    seed: seed of ``Q``, the eigenvalue order and ``x*``.
    diagonal: store ``A`` as a diagonal (default: ``d > 2048``).
    spectrum_kind: ``"geometric"`` or ``"linear"`` spacing.
    dtype: array dtype (default: JAX's default float).
  """
  block_sizes = even_block_sizes(d, S)
  if not (np.isfinite(L) and np.isfinite(mu) and 0 < mu <= L):
    raise ValueError(f"need 0 < mu <= L, got mu={mu}, L={L}")
  if not (np.isfinite(noise) and noise >= 0):
    raise ValueError(f"noise must be a finite number >= 0, got {noise}")
  rng = np.random.default_rng(seed)
  lam = spectrum(d, L, mu, spectrum_kind)
  x_star = rng.standard_normal(d) / np.sqrt(d)
  diagonal = d > 2048 if diagonal is None else diagonal
  if diagonal:
    lam = rng.permutation(lam)
    A = lam
    b = lam * x_star
  else:
    Q, R = np.linalg.qr(rng.standard_normal((d, d)))
    Q = Q * np.sign(np.diag(R))
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    b = A @ x_star
  f_star = float(-0.5 * x_star @ b)
  dtype = dtype or jnp.zeros(()).dtype
  return Quadratic(A=jnp.asarray(A, dtype), b=jnp.asarray(b, dtype), S=S,
                   block_sizes=block_sizes, L=float(lam.max()), f_star=f_star,
                   sigma=float(noise), diagonal=diagonal)


def load_quadratic(path: str, S: int, *, noise: float = 0.0, dtype=None) -> Quadratic:
  """A quadratic from a user's ``.npz`` holding ``A`` (``d x d`` symmetric) and ``b`` (``d``).

  ``A`` must be positive semidefinite and nonzero, and ``b`` in its range, so that ``f`` is
  bounded below; ``L = lambda_max(A)`` and ``f* = -1/2 b'A^+ b`` are computed exactly.

  Raises:
    ValueError: unreadable file, missing or non-numeric arrays, bad shapes, an indefinite or
      zero ``A``, or ``b`` outside the range of a singular ``A`` (naming them).
  """
  from rpd.io import load_npz
  arrays = load_npz(path, "quadratic", {"A": 2, "b": 1})
  A, b = np.asarray(arrays["A"], np.float64), np.asarray(arrays["b"], np.float64)
  if A.ndim != 2 or A.shape[0] != A.shape[1] or b.shape != (A.shape[0],):
    raise ValueError(f"{path}: A must be d x d and b of length d, got A {A.shape}, b {b.shape}")
  if not (np.all(np.isfinite(A)) and np.all(np.isfinite(b))):
    raise ValueError(f"{path}: A and b must be finite")
  if not np.allclose(A, A.T):
    raise ValueError(f"{path}: A must be symmetric")
  if not (np.isfinite(noise) and noise >= 0):
    raise ValueError(f"noise must be a finite number >= 0, got {noise}")
  lam = np.linalg.eigvalsh(A)
  scale = float(np.abs(lam).max())
  if scale == 0:
    raise ValueError(f"{path}: A is zero (f is linear: constant or unbounded below)")
  if lam.min() < -1e-10 * scale:
    raise ValueError(f"{path}: A is indefinite (smallest eigenvalue {lam.min():.3g} < 0): "
                     "f is unbounded below")
  # A positive semidefinite: f is bounded below iff b lies in the range of A, and then
  # f* = -1/2 b'A^+ b (pseudo-inverse; A^{-1} when A is positive definite).
  y = np.linalg.lstsq(A, b, rcond=None)[0]
  if np.linalg.norm(A @ y - b) > 1e-8 * max(1.0, float(np.linalg.norm(b))):
    raise ValueError(f"{path}: A is singular and b is not in its range: f is unbounded below")
  f_star = float(-0.5 * b @ y)
  block_sizes = even_block_sizes(A.shape[0], S)
  dtype = dtype or jnp.zeros(()).dtype
  return Quadratic(A=jnp.asarray(A, dtype), b=jnp.asarray(b, dtype), S=S,
                   block_sizes=block_sizes, L=float(lam.max()), f_star=f_star,
                   sigma=float(noise), name=f"quadratic:{path}")
