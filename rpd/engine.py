"""The stale block-SGD engine: one jitted ``lax.scan`` driver for every rule and problem.

The object of the theory (Randomized PipeDream) and of the practice (steady-state PipeDream)
is *stale block SGD*: with parameters ``x = (x_1, ..., x_S)`` in ``S`` blocks, iteration
``k`` updates one block ``i_k``,

    x_{i_k}^{k+1} = x_{i_k}^k + gamma * u_{i_k}^k,   u = -(optimizer direction of g_{i_k}(x_hat^k; xi)),

where block ``j`` of the stale read ``x_hat^k`` is ``x_j^{k - tau_kj}`` (``x^t = x^0`` for
``t < 0``). "Iterations" are block updates everywhere: ``K`` in the theory, and for a
pipeline rule ``K`` block updates are ``K / S`` microbatches.

Design
------
* One compiled program per (problem structure, rule, optimizer, K, record_every): the outer
  ``lax.scan`` runs over record points, the inner one over engine steps; no Python runs per
  step. Rules are static (hashable) objects; the problem, ``gamma``, the key and ``x0`` are
  traced, so :func:`sweep` vmaps the same program over ``(gamma, seed)``.
* Rules own their state, their read and their update (:mod:`rpd.rules.base`): the engine
  calls ``rule.init`` once and ``rule.step`` per scan step with a
  :class:`rpd.engine_context.Context` through which the rule takes gradients and hands over
  its block updates (``Context.apply``: the optimizer, divergence, delay check, metrics and
  instrumentation in one place). The engine advances ``k`` and checks the count: a step
  that applies a number of block updates other than ``rule.updates_per_step`` raises
  :class:`rpd.engine_context.UpdateCountError` when it is traced; realized blocks and delays
  are scan outputs (fixed-size arrays of the carry), never lists filled while tracing.
* Delay buffers live in the rule families: iteration rules keep an undo log of the last
  ``tau_max`` block updates (:class:`rpd.rules.buffers.UndoLog`), program rules ``R``
  microbatch slots of ``S x D`` (:mod:`rpd.rules.program_rule`; PipeDream ``R = S``).
* Delay check: every delay vector a rule hands to ``Context.apply`` must lie in
  ``[0, tau_max]``; the first violation is recorded and :func:`run` raises
  :class:`rpd.errors.DelayRangeError` naming it.
* Optimizers (:mod:`rpd.optimizers`) act per block: ``x_i <- x_i - gamma * direction_i``,
  each block with its own optimizer state.
* Divergence: a non-finite value in an updated block sets ``diverged`` and the iteration
  ``diverged_at``; later updates are skipped, so a sweep carries on.
* Sharding: with ``mesh`` (a 1-D mesh with axis ``"stage"``), ``x``, the optimizer state and
  every buffer are sharded by block with :func:`jax.shard_map`; each device updates only its
  blocks, and the gradient is evaluated at the all-gathered stale point.

PRNG keys: the run key splits into a selection root and a sample root. Iteration ``k`` of an
iteration rule uses ``fold_in(select_root, k)`` for the rule and ``sample_key(root, k)`` for
the sample; microbatch ``n`` of a program rule uses ``sample_key(root, n)`` (``n`` may be
negative for microbatches in flight at iteration 0). The helpers live in :mod:`rpd.keys`
(re-exported here).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import numpy as np
import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec as P

from rpd import codegen as rpd_codegen
from rpd.engine_context import AXIS, Carry, Context, UpdateCountError
from rpd.engine_core import (_check_K, _metric_dict, _run_local, traced, check_metrics,
                             buffer_floats, on_mesh, step_shapes, RECORD_METRICS)
from rpd.engine_segments import run_segmented
from rpd.errors import DelayRangeError
from rpd.keys import sample_key, select_key
from rpd.optimizers import OPTIMIZERS, get_optimizer
from rpd.problems.base import Problem
from rpd.rules import hyper
from rpd.rules.base import Rule

__all__ = ["run", "sweep", "RunResult", "get_optimizer", "OPTIMIZERS", "sample_key",
           "select_key", "buffer_floats", "step_shapes", "Carry", "Context",
           "UpdateCountError"]

@dataclasses.dataclass
class RunResult:
  """What a run returns (numpy arrays; a :func:`sweep` adds a leading config axis).

  Attributes:
    x_SxD: final parameters.
    metrics: at each record point (``k = 0, r, 2r, ..., K``): ``"k"``, ``"loss"``
      (``f(x^k)``), ``"grad_norm_sq"`` (``||grad f(x^k)||^2``), ``"stale_x_err"``
      (``||x^k - x_hat^k||^2``, ``x_hat^k`` the read of the next iteration) and
      ``"stale_grad_err"`` (``||grad f(x^k) - grad f(x_hat^k)||^2``); with ``track_average``
      also ``"avg_grad_norm_sq"``, ``"avg_stale_x_err"``, ``"avg_stale_grad_err"``: exact
      means over iterations ``0..k-1`` (``nan`` at ``k = 0``).
    diverged: a non-finite value appeared.
    diverged_at: the iteration at which it appeared (``-1`` if never).
    buffer_floats: numbers held in delay buffers (undo log or microbatch slots).
    K: iterations (block updates) run.
    S: blocks.
    rule: the rule's name.
    realized: with ``instrument=True``: ``"block"`` (``(K,)``, the block of each iteration)
      and ``"tau"`` (``(K, S)``, the delays realized by its read).
    stopped: a segmented run (``callback``) was stopped early; ``K`` is what was done.
  """

  x_SxD: np.ndarray
  metrics: dict
  diverged: Any
  diverged_at: Any
  buffer_floats: int
  K: int
  S: int
  rule: str
  realized: dict | None = None
  stopped: bool = False


@functools.partial(jax.jit, static_argnames=("rule", "tx", "K", "record_every", "track",
                                             "instrument", "mesh"))
def _run_jit(problem, x0, gamma, key, *, rule, tx, K, record_every, track, instrument, mesh):
  def f(problem, x0_loc, gamma, key, n_dev):
    return _run_local(problem, rule, tx, n_dev, K, record_every, track, instrument, x0_loc,
                      gamma, key)
  out_specs = (P(AXIS), P(), P(), P(), P(), P(), P(), (P(), P()) if instrument else None)
  return on_mesh(f, mesh, (problem, x0, gamma, key), (P(), P(AXIS), P(), P()), out_specs)


def _validate(problem: Problem, rule: Rule, gamma, mesh):
  if rule.S != problem.S:
    raise ValueError(f"rule has S={rule.S} blocks but the problem has S={problem.S}")
  g = np.asarray(gamma, dtype=np.float64)
  if not np.all(np.isfinite(g)) or not np.all(g > 0):
    raise ValueError(f"step size (lr) must be a finite number > 0, got {gamma!r}")
  if mesh is not None:
    if AXIS not in mesh.shape or len(mesh.shape) != 1:
      raise ValueError(f"mesh must be 1-D with axis {AXIS!r}, got axes {tuple(mesh.shape)}")
    n_dev = mesh.shape[AXIS]
    if rule.S % n_dev:
      raise ValueError(f"device count {n_dev} does not divide S={rule.S}")


def _result(out, rule, problem, K, many: bool, stopped: bool = False,
            metrics=RECORD_METRICS, track: bool = True) -> RunResult:
  x, vals, ks, diverged, at, bad_at, bad, realized = jax.device_get(out)
  bad_at, bad = np.asarray(bad_at), np.asarray(bad)
  if np.any(bad_at >= 0):
    c = np.flatnonzero(bad_at.reshape(-1) >= 0)[0]
    raise DelayRangeError(
        f"rule {rule.name} returned delay {int(bad.reshape(-1)[c])} at iteration "
        f"{int(bad_at.reshape(-1)[c])}, outside [0, tau_max={rule.tau_max}]")
  real = None
  if realized is not None:
    real = {"block": np.asarray(realized[0]), "tau": np.asarray(realized[1])}
  values = _metric_dict(np.asarray(vals), ks)
  if tuple(metrics) != RECORD_METRICS:  # what was not computed is left out
    values = {m: v for m, v in values.items() if m == "k" or m in metrics
              or (track and m.startswith("avg_"))}
  return RunResult(x_SxD=np.asarray(x), metrics=values,
                   diverged=np.asarray(diverged) if many else bool(diverged),
                   diverged_at=np.asarray(at) if many else int(at),
                   buffer_floats=buffer_floats(rule, problem.D), K=K, S=rule.S, rule=rule.name,
                   realized=real, stopped=stopped)


def run(problem: Problem, rule: Rule, *, gamma: float, K: int, key: jax.Array,
        optimizer="sgd", record_every: int | None = None, x0=None, mesh=None,
        track_average: bool = False, instrument: bool = False,
        callback: Callable | None = None) -> RunResult:
  """Run stale block SGD for ``K`` iterations (block updates).

  Args:
    problem: a :class:`rpd.problems.Problem` with ``S`` blocks.
    rule: a stale-update rule for the same ``S`` (:func:`rpd.rules.get_rule`).
    gamma: step size ``> 0``.
    K: iterations (block updates); a multiple of ``rule.updates_per_step``.
    key: a ``jax.random.key``.
    optimizer: ``"sgd"``, ``"momentum"``, ``"adam"`` or an optax direction transformation.
    record_every: iterations between metric records (divides ``K``; default: at most 129
      records).
    x0: initial ``x_SxD`` (default ``problem.init(key)``, zeros for the convex problems).
    mesh: optional 1-D ``jax.sharding.Mesh`` with axis ``"stage"`` whose size divides ``S``.
    track_average: also accumulate the exact per-iteration averages (costs full gradients
      at every iteration).
    instrument: also return the realized block and delays of every iteration.
    callback: run in segments of about a sixteenth of a record interval (compiled once,
      the carry kept on the device between calls; the same iterates as without), calling
      ``callback(k, metrics_so_far)`` before each segment and at the end; a ``True``
      return stops the run there (``RunResult.stopped``, ``K`` = iterations done, a last
      record at ``K``).

  Returns:
    a :class:`RunResult`.

  Raises:
    ValueError: bad ``gamma``, ``K``, ``record_every``, mesh, or mismatched ``S``.
    DelayRangeError: the rule produced a delay outside ``[0, tau_max]``.
  """
  _validate(problem, rule, gamma, mesh)
  _check_K(rule, K, record_every)
  tx = get_optimizer(optimizer)
  if x0 is None:
    x0 = problem.init(key)
  x0 = jnp.asarray(x0)
  if x0.shape != (problem.S, problem.D):
    raise ValueError(f"x0 must have shape {(problem.S, problem.D)}, got {x0.shape}")
  skeleton, theta = traced(rule, gamma, x0.dtype)  # numeric hyperparameters are traced
  if mesh is not None:
    x0 = jax.device_put(x0, NamedSharding(mesh, P(AXIS)))
  if callback is not None:
    out, stopped, k_done = run_segmented(problem, skeleton, tx, int(K), record_every,
                                         track_average, instrument, mesh, x0, theta, key,
                                         callback)
    return _result(out, rule, problem, k_done, many=False, stopped=stopped)
  out = _run_jit(problem, x0, theta, key, rule=skeleton, tx=tx, K=int(K),
                 record_every=record_every, track=track_average, instrument=instrument,
                 mesh=mesh)
  return _result(out, rule, problem, int(K), many=False)


_SWEEP_STATIC = ("rule", "tx", "K", "record_every", "track", "metrics")


def _sweep_body(problem, x0s, gammas, keys, *, rule, tx, K, record_every, track,
                metrics=RECORD_METRICS):
  f = functools.partial(_run_local, problem, rule, tx, None, K, record_every, track, False,
                        metrics=metrics)
  return jax.vmap(f)(x0s, gammas, keys)


_sweep_jit = jax.jit(_sweep_body, static_argnames=_SWEEP_STATIC)


def sweep(problem: Problem, rule: Rule, *, gammas, seeds, K: int, optimizer="sgd",
          record_every: int | None = None, x0=None, track_average: bool = False,
          variants=None, metrics=None, codegen: str | None = None) -> RunResult:
  """Run a batch of ``(gamma, seed)`` configurations as one vmapped, compiled program.

  Equal to calling :func:`run` with ``key = jax.random.key(seed)`` for each pair (and rule
  ``variants[n]`` when given).

  Args:
    gammas: step sizes, shape ``(N,)``.
    seeds: integer seeds, shape ``(N,)``.
    variants: optional ``N`` rules that differ from ``rule`` only in traced
      hyperparameters (:mod:`rpd.rules.hyper`: ``dc``'s lambda, ``pipemare``'s decay),
      e.g. ``[get_rule(f"dc:{lam}:pipedream", S) for lam in lams]``: one program for all.
    metrics: the record metrics to compute (default all: ``"loss"``, ``"grad_norm_sq"``,
      ``"stale_x_err"``, ``"stale_grad_err"``); the others are left out of the result. Each
      costs full-data evaluations of the objective at every record and its code in the
      compiled program (a sweep that needs only the loss compiles and runs faster); the
      iterates do not depend on it.
    codegen: the XLA:CPU code generation of the program, a name of
      :data:`rpd.codegen.CODEGEN` (``"fast"`` to compile, ``"optimized"`` to run), or
      ``None`` (default): the process's ``XLA_FLAGS``. It changes the numbers only in their
      last digits.
    (others as in :func:`run`; a given ``x0`` is shared by all configurations, by default
    each starts at ``problem.init(key)`` of its own key, as :func:`run` does.)

  Returns:
    a :class:`RunResult` whose arrays have a leading axis of length ``N``.
  """
  gammas = np.atleast_1d(np.asarray(gammas, np.float64))
  seeds = np.atleast_1d(np.asarray(seeds))
  if gammas.shape != seeds.shape:
    raise ValueError(f"gammas and seeds must have the same length, got {gammas.shape} and "
                     f"{seeds.shape}")
  _validate(problem, rule, gammas, None)
  _check_K(rule, K, record_every)
  metrics = check_metrics(metrics)
  rpd_codegen.check(codegen)
  tx = get_optimizer(optimizer)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  if x0 is None:
    x0s = jax.vmap(problem.init)(keys)  # as run() does with each key
  else:
    x0s = jnp.broadcast_to(jnp.asarray(x0), (len(seeds),) + jnp.shape(x0))
  skeleton, (g, hv) = traced(rule, gammas, x0s.dtype)
  if variants is not None:
    if len(variants) != len(seeds) or any(hyper.split(v)[0] != skeleton for v in variants):
      raise ValueError("variants must be one rule per configuration, each differing from "
                       "rule only in traced hyperparameters")
    hv = jnp.asarray(np.stack([hyper.values(v) for v in variants]), x0s.dtype)
  else:
    hv = jnp.broadcast_to(hv, (len(seeds),) + hv.shape)
  program = (_sweep_jit if codegen is None
             else rpd_codegen.jit(_sweep_body, codegen, _SWEEP_STATIC))
  out = program(problem, x0s, (g, hv), keys, rule=skeleton, tx=tx,
                K=int(K), record_every=record_every, track=track_average, metrics=metrics)
  return _result(out, rule, problem, int(K), many=True, metrics=metrics, track=track_average)
