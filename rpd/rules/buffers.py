"""Delay buffers the rule families keep in their state.

* :class:`UndoLog` (iteration rules): the last ``T = tau_max`` block updates, each as
  (local block index, iteration, the value it overwrote): ``T * D`` numbers, at most
  ``(tau_max + 1) d / S + d`` with the current ``x``. The stale read

      x_hat_j = x_j^{k - tau_j}   (x^t = x^0 for t < 0)

  is the overwritten value of the *earliest* logged update of block ``j`` at an iteration
  ``>= k - tau_j`` (the first update the read must not see), else the current ``x_j``
  (no such update). This is the one stale-read implementation of the package.
* Program rules keep microbatch slots (:mod:`rpd.rules.program_rule`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class UndoLog(NamedTuple):
  """A ring of the last ``T`` block updates (see the module docstring).

  Attributes:
    blk: ``(T,)`` int32, local index of the updated block (``-1``: empty, or a block of
      another device).
    it: ``(T,)`` int32, the iteration of the update (``-1``: empty).
    old: ``(T, D)``, the value of the block before the update.
  """

  blk: jax.Array
  it: jax.Array
  old: jax.Array

  @staticmethod
  def init(T: int, x_loc: jax.Array) -> "UndoLog":
    """An empty log of ``T`` entries for blocks shaped like the rows of ``x_loc``."""
    return UndoLog(jnp.full((T,), -1, jnp.int32), jnp.full((T,), -1, jnp.int32),
                   jnp.zeros((T,) + x_loc.shape[1:], x_loc.dtype))

  @property
  def T(self) -> int:
    return self.blk.shape[0]

  def _valid(self, tau_loc, k):
    """``(S_loc, T)``: entry ``t`` is an update of block ``j`` the read of ``j`` must undo."""
    j = jnp.arange(tau_loc.shape[0], dtype=jnp.int32)
    return (self.blk[None, :] == j[:, None]) & (self.it[None, :] >= (k - tau_loc)[:, None])

  def read(self, x_loc: jax.Array, tau_loc: jax.Array, k) -> jax.Array:
    """``x_hat_j = x_j^{k - tau_j}`` for the local blocks (``tau_loc``: their delays)."""
    if self.T == 0:
      return x_loc
    valid = self._valid(tau_loc, k)
    big = jnp.iinfo(jnp.int32).max
    t_star = jnp.argmin(jnp.where(valid, self.it[None, :], big), axis=1)
    has = jnp.any(valid, axis=1)
    return jnp.where(has[:, None], self.old[t_star], x_loc)

  def versions_since(self, tau_loc: jax.Array, k) -> jax.Array:
    """For each local block, how many of its updates the read at delay ``tau`` misses."""
    if self.T == 0:
      return jnp.zeros(tau_loc.shape, jnp.int32)
    return jnp.sum(self._valid(tau_loc, k), axis=1).astype(jnp.int32)

  def push(self, k, li, owned, old_row) -> "UndoLog":
    """Log the update at iteration ``k`` of local block ``li`` (``owned`` by this device)."""
    if self.T == 0:
      return self
    pos = k % self.T
    return UndoLog(self.blk.at[pos].set(jnp.where(owned, li.astype(jnp.int32), -1)),
                   self.it.at[pos].set(k), self.old.at[pos].set(old_row))
