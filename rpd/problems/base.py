"""The problem interface: an objective whose parameters are split into S blocks.

A problem is a pytree (a ``flax.struct.dataclass``): its data arrays are leaves, its sizes
and constants are static fields, so one jitted driver takes any problem as an argument
without baking its data into the compiled program as constants.

Parameters are always held as ``x_SxD``: ``S`` blocks, each a flat vector padded with zeros
to the common width ``D = max(block_sizes)``. Block ``s`` holds ``block_sizes[s]`` real
entries followed by padding; losses never read the padding, so its gradient is zero and the
stale block-SGD engine can treat every block alike (and shard them over devices).
"""
from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Batch = Any  # a pytree of arrays: one stochastic sample (minibatch or noise draw)


def even_block_sizes(d: int, S: int) -> tuple[int, ...]:
  """Split ``d`` coordinates into ``S`` contiguous blocks of sizes differing by at most one.

  Raises:
    ValueError: if ``S < 1`` or ``S > d``.
  """
  if S < 1 or S > d:
    raise ValueError(f"need 1 <= S <= d, got S={S}, d={d}")
  q, r = divmod(d, S)
  return tuple(q + 1 if s < r else q for s in range(S))


def split_blocks(x_d: jax.Array, block_sizes: tuple[int, ...]) -> jax.Array:
  """Flat ``x_d`` -> padded ``x_SxD`` (``D = max(block_sizes)``)."""
  D = max(block_sizes)
  offsets = np.concatenate([[0], np.cumsum(block_sizes)])
  rows = [jnp.pad(x_d[offsets[s]:offsets[s + 1]], (0, D - block_sizes[s]))
          for s in range(len(block_sizes))]
  return jnp.stack(rows)


def merge_blocks(x_SxD: jax.Array, block_sizes: tuple[int, ...]) -> jax.Array:
  """Padded ``x_SxD`` -> flat ``x_d`` (drops the padding)."""
  return jnp.concatenate([x_SxD[s, :n] for s, n in enumerate(block_sizes)])


class Problem(abc.ABC):
  """Interface every problem implements (see the module docstring for the layout).

  Static attributes (dataclass fields with ``pytree_node=False`` in implementations):
    name: registry name.
    S: number of blocks.
    block_sizes: real size of each block; ``d = sum(block_sizes)``, ``D = max(block_sizes)``.
    L: smoothness constant of ``f`` if known, else ``None``.
    f_star: ``inf f`` if known, else ``None``.
  """

  @property
  def d(self) -> int:
    """Total number of parameters."""
    return int(sum(self.block_sizes))

  @property
  def D(self) -> int:
    """Padded block width."""
    return int(max(self.block_sizes))

  def flat(self, x_SxD: jax.Array) -> jax.Array:
    """Padded ``x_SxD`` -> flat ``x_d`` (a reshape when ``S`` divides ``d``)."""
    if self.d == self.S * self.D:
      return x_SxD.reshape(-1)
    return merge_blocks(x_SxD, self.block_sizes)

  def blocks(self, v_d: jax.Array) -> jax.Array:
    """Flat ``v_d`` -> padded ``(S, D)`` (a reshape when ``S`` divides ``d``)."""
    if self.d == self.S * self.D:
      return v_d.reshape(self.S, self.D)
    return split_blocks(v_d, self.block_sizes)

  @abc.abstractmethod
  def init(self, key: jax.Array) -> jax.Array:
    """Initial parameters ``x0_SxD`` (zeros for the convex problems)."""

  @abc.abstractmethod
  def sample(self, key: jax.Array) -> Batch:
    """One stochastic sample ``xi`` (a minibatch, or a noise draw)."""

  @abc.abstractmethod
  def loss(self, x_SxD: jax.Array, batch: Batch) -> jax.Array:
    """Stochastic loss ``f(x; xi)`` (a scalar)."""

  def grad(self, x_SxD: jax.Array, batch: Batch) -> jax.Array:
    """Stochastic gradient ``g(x; xi)``, shape ``(S, D)``; zero on the padding."""
    return jax.grad(self.loss)(x_SxD, batch)

  @abc.abstractmethod
  def full_loss(self, x_SxD: jax.Array) -> jax.Array:
    """Exact objective ``f(x)`` (expectation, or the full data set)."""

  def full_grad(self, x_SxD: jax.Array) -> jax.Array:
    """Exact gradient ``grad f(x)``, shape ``(S, D)``."""
    return jax.grad(self.full_loss)(x_SxD)
