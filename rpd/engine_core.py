"""The engine's driver pieces: the carry's start, one step, the records, the whole local run.

Used by :mod:`rpd.engine` (one compiled program per run or sweep) and
:mod:`rpd.engine_segments` (segmented runs); see :mod:`rpd.engine` for the design.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import jax
import jax.numpy as jnp

from rpd.engine_context import AXIS, Carry, Context, UpdateCountError, sq
from rpd.optimizers import get_optimizer
from rpd.problems.base import Problem
from rpd.rules import hyper
from rpd.rules.base import Rule

_NAMES = ("loss", "grad_norm_sq", "stale_x_err", "stale_grad_err",
          "avg_grad_norm_sq", "avg_stale_x_err", "avg_stale_grad_err")


def buffer_floats(rule: Rule, D: int) -> int:
  """Numbers held in the delay buffers for ``rule`` with padded block width ``D``."""
  return rule.buffer_floats(D)


def _check_K(rule: Rule, K: int, record_every: int | None) -> tuple[int, int]:
  """Validate ``K`` and ``record_every``; return ``(records, steps_per_record)``."""
  ups = rule.updates_per_step
  if not isinstance(K, (int, np.integer)) or K < 1:
    raise ValueError(f"K (steps) must be an integer >= 1, got {K!r}")
  if K % ups:
    raise ValueError(f"K={K} must be a multiple of {ups} for rule {rule.name} "
                     f"({ups} block updates per step)")
  steps = K // ups
  if record_every is None:
    per = 1
    while steps // per > 128 or steps % per:
      per += 1
    record_every = per * ups
  if (not isinstance(record_every, (int, np.integer)) or record_every < 1
      or record_every % ups or K % record_every):
    raise ValueError(f"record_every={record_every!r} must divide K={K} and be a multiple "
                     f"of {ups} (block updates per step of rule {rule.name})")
  return K // record_every, record_every // ups


def bind(rule: Rule, theta):
  """The traced parameters ``theta = (gamma, hyper)``: ``(rule with its traced
  hyperparameters filled in, gamma)`` (:mod:`rpd.rules.hyper`)."""
  gamma, hv = theta
  return hyper.merge(rule, hv), gamma


def traced(rule: Rule, gamma, dtype):
  """``(skeleton rule, theta)``: the static rule and the traced ``(gamma, hyper)``."""
  skeleton, hv = hyper.split(rule)
  return skeleton, (jnp.asarray(gamma, dtype), jnp.asarray(hv, dtype))


def _context(problem, rule, tx, gamma, n_dev, track) -> Context:
  S = rule.S
  return Context(problem=problem, tx=tx, gamma=gamma, tau_max=int(rule.tau_max), S=S,
                 S_loc=S // (n_dev or 1), sharded=n_dev is not None, track=track)


def _init_carry(ctx: Context, rule: Rule, x0_loc, key) -> Carry:
  i32 = lambda v: jnp.full((), v, jnp.int32)
  ups = rule.updates_per_step
  return Carry(x=x0_loc, opt=jax.vmap(ctx.tx.init)(x0_loc), rule=rule.init(x0_loc, key, ctx),
               k=i32(0), diverged=jnp.zeros((), bool), diverged_at=i32(-1),
               bad_delay_at=i32(-1), bad_delay=i32(0), sums=jnp.zeros((3,), x0_loc.dtype),
               out_block=jnp.zeros((ups,), jnp.int32),
               out_tau=jnp.full((ups, rule.S), -1, jnp.int32))


# The metrics a record computes (``metrics=`` of :func:`rpd.engine.sweep`); the running means
# ``avg_*`` come from the carry's sums (``track``) and cost nothing at a record.
RECORD_METRICS = _NAMES[:4]


def check_metrics(metrics) -> tuple[str, ...]:
  """``metrics`` (``None``: all of :data:`RECORD_METRICS`) as a tuple in their order."""
  if metrics is None:
    return RECORD_METRICS
  bad = [m for m in metrics if m not in RECORD_METRICS]
  if bad:
    raise ValueError(f"unknown record metric {bad[0]!r}; known: {', '.join(RECORD_METRICS)}")
  return tuple(m for m in RECORD_METRICS if m in metrics)


def _metrics(problem, x, xhat, metrics=RECORD_METRICS):
  """The record metrics at ``x`` (read point ``xhat``); those not in ``metrics`` are ``nan``
  and not computed (each costs full-data evaluations of the objective)."""
  nan = jnp.full((), jnp.nan, x.dtype)
  gf = problem.full_grad(x) if {"grad_norm_sq", "stale_grad_err"} & set(metrics) else None
  return jnp.stack([problem.full_loss(x) if "loss" in metrics else nan,
                    sq(gf) if "grad_norm_sq" in metrics else nan,
                    sq(x - xhat) if "stale_x_err" in metrics else nan,
                    sq(gf - problem.full_grad(xhat)) if "stale_grad_err" in metrics else nan])


def _record(ctx: Context, rule: Rule, carry: Carry, key, metrics=RECORD_METRICS):
  """Metrics at the current iterate: ``(values (7,), k)`` (``nan`` where not in ``metrics``)."""
  stale = {"stale_x_err", "stale_grad_err"} & set(metrics)
  xhat = rule.read_point(carry, key, ctx) if stale else None
  m = _metrics(ctx.problem, ctx.gather(carry.x), xhat, metrics)
  k = carry.k
  avg = carry.sums / jnp.maximum(k, 1).astype(carry.sums.dtype)
  avg = jnp.where(k > 0, avg, jnp.nan)
  return jnp.concatenate([m, avg]), k


def _step(ctx: Context, rule: Rule, key, carry: Carry, instrument: bool):
  """One engine step: the rule's updates, counted; ``k`` advanced by the engine.

  Returns ``(carry, realized (blocks, taus) of the step, or None)``.

  Raises:
    UpdateCountError: (while tracing) the step applied a number of block updates other
      than ``rule.updates_per_step``.
  """
  ctx = dataclasses.replace(ctx, applied=0)
  k0 = carry.k
  carry = rule.step(carry, key, ctx)
  ups = rule.updates_per_step
  if ctx.applied != ups:
    raise UpdateCountError(f"rule {rule.name} applied {ctx.applied} block updates in a step; "
                           f"its updates_per_step is {ups}")
  carry = carry._replace(k=k0 + ups)
  return carry, ((carry.out_block, carry.out_tau) if instrument else None)


def _steps(ctx, rule, key, carry, n: int, instrument: bool):
  """``n`` steps in a ``lax.scan``: ``(carry, stacked realized or None)``."""
  return jax.lax.scan(lambda c, _: _step(ctx, rule, key, c, instrument), carry, None,
                      length=n)


def _flat_realized(outs, S):
  """Stacked per-step realized ``(blocks, taus)`` -> ``((K,), (K, S))``."""
  return (outs[0].reshape(-1), outs[1].reshape(-1, S))


def _run_local(problem, rule, tx, n_dev, K, record_every, track, instrument, x0_loc, theta,
               key, metrics=RECORD_METRICS):
  """The whole run on this device's blocks (called directly, or inside ``shard_map``);
  ``theta = (gamma, traced hyperparameters)``; ``metrics``: those the records compute."""
  rule, gamma = bind(rule, theta)
  n_rec, inner = _check_K(rule, K, record_every)
  ctx = _context(problem, rule, tx, gamma, n_dev, track)
  carry = _init_carry(ctx, rule, x0_loc, key)
  steps = lambda c: _steps(ctx, rule, key, c, inner, instrument)
  ups = rule.updates_per_step  # realized (blocks, taus) of an interval's steps, unused at r = 0
  none = ((jnp.zeros((inner, ups), jnp.int32), jnp.zeros((inner, ups, rule.S), jnp.int32))
          if instrument else None)

  def outer(carry, r):
    # Record r follows r intervals of steps (none before record 0): the first record is made
    # by the same code as the others, so the program holds one copy of the record's metrics
    # (full-data loss and gradients: 9-22% of a program's compile time, BENCHMARKS.md).
    carry, out = jax.lax.cond(r > 0, steps, lambda c: (c, none), carry)
    return carry, (_record(ctx, rule, carry, key, metrics), out)

  carry, ((vals, ks), outs) = jax.lax.scan(outer, carry, jnp.arange(n_rec + 1))
  realized = (_flat_realized(jax.tree.map(lambda a: a[1:], outs), rule.S) if instrument
              else None)
  return (carry.x, vals, ks, carry.diverged, carry.diverged_at, carry.bad_delay_at,
          carry.bad_delay, realized)


def on_mesh(f, mesh, args, in_specs, out_specs):
  """``f(*args, n_dev)`` directly (``mesh=None``, ``n_dev = None``) or under
  :func:`jax.shard_map` over the ``"stage"`` axis of ``mesh`` (the one place that sets it up)."""
  if mesh is None:
    return f(*args, None)
  n_dev = mesh.shape[AXIS]
  return jax.shard_map(lambda *a: f(*a, n_dev), mesh=mesh, in_specs=in_specs,
                       out_specs=out_specs, check_vma=False)(*args)



def _metric_dict(vals, ks):
  metrics = {"k": np.asarray(ks)}
  for c, name in enumerate(_NAMES):
    metrics[name] = vals[..., c]
  return metrics


def step_shapes(problem: Problem, rule: Rule, optimizer="sgd"):
  """Shapes and dtypes of the scan carry before and after one engine step.

  The common rule suite checks they are equal (a rule's state must keep its shape and
  dtype, or the scan would not compile).

  Returns:
    ``(before, after)``: pytrees of ``jax.ShapeDtypeStruct``.
  """
  tx = get_optimizer(optimizer)

  def init(x0, key, gamma):
    return _init_carry(_context(problem, rule, tx, gamma, None, False), rule, x0, key)

  def one(x0, key, gamma):
    ctx = _context(problem, rule, tx, gamma, None, False)
    return _step(ctx, rule, key, _init_carry(ctx, rule, x0, key), False)[0]

  x0 = problem.init(jax.random.key(0))
  key = jax.random.key(0)
  gamma = jnp.asarray(0.1, x0.dtype)
  return jax.eval_shape(init, x0, key, gamma), jax.eval_shape(one, x0, key, gamma)
