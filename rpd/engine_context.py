"""The engine's scan carry and the context a rule steps with (see :mod:`rpd.engine`).

A rule's step takes gradients through :meth:`Context.grad` and hands its block updates to
:meth:`Context.apply`, the one place that runs the optimizer, the divergence check, the delay
check, the per-iteration metrics and the instrumentation. The engine, not the rule, advances
the iteration counter (by ``updates_per_step`` after each step) and checks that the step
applied exactly ``updates_per_step`` block updates (:class:`UpdateCountError`, raised while
the step is traced, before anything runs). Realized blocks and delays go into fixed-size
arrays of the carry (``out_block``, ``out_tau``, one row per update of the step) that the
engine returns as scan outputs.
"""
from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp
import optax

from rpd.problems.base import Problem

AXIS = "stage"


class UpdateCountError(ValueError):
  """A rule's step applied a number of block updates other than its ``updates_per_step``."""


class Carry(NamedTuple):
  """The scan carry (this device's part of it under ``shard_map``).

  Attributes:
    x: ``(S_loc, D)`` the blocks.
    opt: the per-block optimizer state (leading axis ``S_loc``).
    rule: the rule's state (``rule.init``).
    k: int32, iterations (block updates) done before this step.
    diverged: a non-finite update appeared (later updates are skipped).
    diverged_at: the iteration of the first non-finite update (``-1``: none).
    bad_delay_at: the first iteration whose delays left ``[0, tau_max]`` (``-1``: none).
    bad_delay: the offending delay.
    sums: ``(3,)`` running sums of the per-iteration metrics (``track_average``).
    out_block: ``(updates_per_step,)`` int32, the block of each update of the last step.
    out_tau: ``(updates_per_step, S)`` int32, its realized delays (``-1``: not reported).
  """

  x: jax.Array
  opt: Any
  rule: Any
  k: jax.Array
  diverged: jax.Array
  diverged_at: jax.Array
  bad_delay_at: jax.Array
  bad_delay: jax.Array
  sums: jax.Array
  out_block: jax.Array
  out_tau: jax.Array


def sq(a):
  """``||a||^2``."""
  return jnp.sum(jnp.square(a))


@dataclasses.dataclass
class Context:
  """What a rule steps with: the problem, the block layout, gradients and block updates.

  Built by the engine for each trace of a step. Blocks are held locally as ``(S_loc, D)``
  (all ``S`` unsharded); gradients are taken at gathered ``S x D`` points.

  Attributes:
    problem, tx, gamma, tau_max: the run's problem, optimizer, step size and the rule's
      largest delay.
    S, S_loc, sharded: blocks, blocks on this device, whether under ``shard_map``.
    track: accumulate per-iteration metrics (the rule then keeps its updates in time order
      and passes each one's read point).
    applied: block updates applied in the step being traced (a static count).
  """

  problem: Problem
  tx: optax.GradientTransformation
  gamma: Any
  tau_max: int
  S: int
  S_loc: int
  sharded: bool
  track: bool = False
  applied: int = 0

  # layout
  def offset(self):
    return jax.lax.axis_index(AXIS) * self.S_loc if self.sharded else 0

  def gather(self, a_loc):
    """Local ``(S_loc, ...)`` -> global ``(S, ...)``."""
    return jax.lax.all_gather(a_loc, AXIS, tiled=True) if self.sharded else a_loc

  def local(self, a_glob):
    """Global ``(S, ...)`` -> this device's ``(S_loc, ...)``."""
    if not self.sharded:
      return a_glob
    return jax.lax.dynamic_slice_in_dim(a_glob, self.offset(), self.S_loc, 0)

  def psum(self, v):
    return jax.lax.psum(v, AXIS) if self.sharded else v

  def own(self, blocks):
    """Global block indices -> ``(local indices clipped into range, owned by this device)``.

    Static (numpy) indices stay static when unsharded.
    """
    if not self.sharded:
      if isinstance(blocks, np.ndarray):
        return blocks, np.ones(blocks.shape, bool)
      return blocks, jnp.ones(jnp.shape(blocks), bool)
    lbs = blocks - self.offset()
    owned = (lbs >= 0) & (lbs < self.S_loc)
    return jnp.clip(lbs, 0, self.S_loc - 1), owned

  # gradients
  def grad(self, xhat, key):
    """Stochastic gradient ``g(xhat; xi)`` at the gathered point, ``xi`` drawn with ``key``."""
    return self.problem.grad(xhat, self.problem.sample(key))

  # updates
  def apply(self, carry: Carry, blocks, g_rows, pos, *, tau, xhat=None) -> Carry:
    """Block updates ``x_b <- x_b - gamma * opt(g_b)`` of distinct blocks (they commute).

    Args:
      carry: the carry.
      blocks: ``(n,)`` global block indices (static or traced).
      g_rows: ``(n, D)`` their (transformed) gradients.
      pos: ``(n,)`` the iteration of each update (``carry.k`` + its place in the step); a
        non-finite update stops every member at or after it, on every device.
      tau: ``(n, S)`` the delays of each update's read: checked against ``[0, tau_max]``
        and reported as the realized delays.
      xhat: with ``track`` (then ``n = 1``): the gathered read point of the update.

    Returns:
      the carry with the updates applied (``k`` is advanced by the engine, not here).
    """
    blocks = blocks if isinstance(blocks, np.ndarray) else jnp.asarray(blocks, jnp.int32)
    pos = jnp.asarray(pos, jnp.int32)
    tau = jnp.asarray(tau, jnp.int32)
    n = blocks.shape[0]
    self.applied += n
    carry = self._report(carry, blocks, pos, tau)
    if self.track:
      if n != 1:
        raise ValueError("per-iteration metrics need one update at a time")
      xfull = self.gather(carry.x)
      gf = self.problem.full_grad(xfull)
      carry = carry._replace(sums=carry.sums + jnp.stack(
          [sq(gf), sq(xfull - xhat), sq(gf - self.problem.full_grad(xhat))]))
    lis, owned = self.own(blocks)
    x, opt = carry.x, carry.opt
    state = jax.tree.map(lambda a: a[lis], opt)
    u, new_state = jax.vmap(self.tx.update)(g_rows, state, x[lis])
    new_x = x[lis] - self.gamma * u
    bad = owned & ~carry.diverged & ~jnp.all(jnp.isfinite(new_x), axis=-1)
    big = jnp.iinfo(jnp.int32).max
    first = jnp.min(jnp.where(bad, pos, big))
    if self.sharded:
      first = jax.lax.pmin(first, AXIS)
    apply = owned & ~carry.diverged & (pos < first)
    dst = jnp.where(apply, lis, self.S_loc)  # out of range: dropped
    x = x.at[dst].set(new_x, mode="drop")
    opt = jax.tree.map(lambda a, s: a.at[dst].set(s, mode="drop"), opt, new_state)
    bad = self.psum(jnp.asarray(first < big).astype(jnp.int32)) > 0
    return carry._replace(x=x, opt=opt, diverged=carry.diverged | bad,
                          diverged_at=jnp.where(bad & ~carry.diverged, first, carry.diverged_at))

  def _report(self, carry: Carry, blocks, pos, tau) -> Carry:
    """Record the realized blocks and delays; note the first delay outside the range."""
    row = pos - carry.k  # place in the step
    out_block = carry.out_block.at[row].set(jnp.asarray(blocks, jnp.int32), mode="drop")
    out_tau = carry.out_tau.at[row].set(tau, mode="drop")
    hi, lo = jnp.max(tau, axis=-1), jnp.min(tau, axis=-1)
    out = (hi > self.tau_max) | (lo < 0)
    big = jnp.iinfo(jnp.int32).max
    at = jnp.min(jnp.where(out, pos, big))
    c = jnp.argmin(jnp.where(out, pos, big))
    first = (at < big) & (carry.bad_delay_at < 0)
    delay = jnp.where(lo[c] < 0, lo[c], hi[c])
    return carry._replace(out_block=out_block, out_tau=out_tau,
                          bad_delay_at=jnp.where(first, at, carry.bad_delay_at),
                          bad_delay=jnp.where(first, delay, carry.bad_delay))
