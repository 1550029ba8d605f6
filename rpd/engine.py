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
  are scan outputs (fixed-size arrays of the carry), never lists filled while tracing. The delay buffers live in the
  rule families that need them: iteration rules keep an undo log of the last ``tau_max``
  block updates (:class:`rpd.rules.buffers.UndoLog`, ``tau_max * D`` numbers), program
  rules keep ``R`` microbatch slots of ``S x D`` (:mod:`rpd.rules.program_rule`,
  PipeDream ``R = S``: ``S d`` numbers, below the ``(S + 1) d`` budget).
* The scan carry is one named structure, :class:`Carry`.
* Delay check: every delay vector a rule hands to ``Context.apply`` must lie in
  ``[0, tau_max]``; the first violation is recorded and :func:`run` raises
  :class:`rpd.errors.DelayRangeError` naming it.
* Optimizers are applied per block: the optimizer gives a direction (SGD: the gradient;
  ``"momentum"``: heavy ball; ``"adam"``: Adam's scaling; or any optax
  ``GradientTransformation``), each block keeps its own optimizer state, and the engine
  applies ``x_i <- x_i - gamma * direction_i``.
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
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rpd.engine_context import AXIS, Carry, Context, UpdateCountError, sq
from rpd.errors import DelayRangeError
from rpd.keys import sample_key, select_key
from rpd.problems.base import Problem
from rpd.rules.base import Rule

__all__ = ["run", "sweep", "RunResult", "get_optimizer", "OPTIMIZERS", "sample_key",
           "select_key", "buffer_floats", "step_shapes", "Carry", "Context",
           "UpdateCountError"]

OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "sgd": optax.identity,
    "momentum": lambda: optax.trace(decay=0.9),
    "adam": optax.scale_by_adam,
}


def get_optimizer(optimizer) -> optax.GradientTransformation:
  """The direction transformation for ``optimizer`` (a name in ``OPTIMIZERS`` or optax).

  The engine multiplies the direction by ``-gamma``: ``"sgd"`` is ``x - gamma g``,
  ``"momentum"`` heavy ball with ``beta = 0.9`` (``v <- g + 0.9 v``), ``"adam"`` Adam with
  optax's defaults. A user's ``GradientTransformation`` is used as a direction (give it no
  learning rate of its own).

  Raises:
    ValueError: unknown name.
  """
  if isinstance(optimizer, optax.GradientTransformation):
    return optimizer
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
  return _named_optimizer(optimizer)


@functools.lru_cache(maxsize=None)
def _named_optimizer(name: str) -> optax.GradientTransformation:
  # One instance per name, so that the compiled program is reused across runs.
  return OPTIMIZERS[name]()


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


def _metrics(problem, x, xhat):
  gf = problem.full_grad(x)
  return jnp.stack([problem.full_loss(x), sq(gf), sq(x - xhat),
                    sq(gf - problem.full_grad(xhat))])


def _record(ctx: Context, rule: Rule, carry: Carry, key):
  """Metrics at the current iterate: ``(values (7,), k)``."""
  xhat = rule.read_point(carry, key, ctx)
  m = _metrics(ctx.problem, ctx.gather(carry.x), xhat)
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


def _run_local(problem, rule, tx, n_dev, K, record_every, track, instrument, x0_loc, gamma,
               key):
  """The whole run on this device's blocks (called directly, or inside ``shard_map``)."""
  n_rec, inner = _check_K(rule, K, record_every)
  ctx = _context(problem, rule, tx, gamma, n_dev, track)
  carry = _init_carry(ctx, rule, x0_loc, key)
  m0 = _record(ctx, rule, carry, key)

  def outer(carry, _):
    carry, out = _steps(ctx, rule, key, carry, inner, instrument)
    return carry, (_record(ctx, rule, carry, key), out)

  carry, (recs, outs) = jax.lax.scan(outer, carry, None, length=n_rec)
  vals = jnp.concatenate([m0[0][None], recs[0]])
  ks = jnp.concatenate([m0[1][None], recs[1]])
  realized = _flat_realized(outs, rule.S) if instrument else None
  return (carry.x, vals, ks, carry.diverged, carry.diverged_at, carry.bad_delay_at,
          carry.bad_delay, realized)


_NAMES = ("loss", "grad_norm_sq", "stale_x_err", "stale_grad_err",
          "avg_grad_norm_sq", "avg_stale_x_err", "avg_stale_grad_err")


def on_mesh(f, mesh, args, in_specs, out_specs):
  """``f(*args, n_dev)`` directly (``mesh=None``, ``n_dev = None``) or under
  :func:`jax.shard_map` over the ``"stage"`` axis of ``mesh`` (the one place that sets it up)."""
  if mesh is None:
    return f(*args, None)
  n_dev = mesh.shape[AXIS]
  return jax.shard_map(lambda *a: f(*a, n_dev), mesh=mesh, in_specs=in_specs,
                       out_specs=out_specs, check_vma=False)(*args)


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


def _metric_dict(vals, ks):
  metrics = {"k": np.asarray(ks)}
  for c, name in enumerate(_NAMES):
    metrics[name] = vals[..., c]
  return metrics


def _metric_dict(vals, ks):
  metrics = {"k": np.asarray(ks)}
  for c, name in enumerate(_NAMES):
    metrics[name] = vals[..., c]
  return metrics


def _result(out, rule, problem, K, many: bool, stopped: bool = False) -> RunResult:
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
  return RunResult(x_SxD=np.asarray(x), metrics=_metric_dict(np.asarray(vals), ks),
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
  gamma = jnp.asarray(gamma, x0.dtype)
  if mesh is not None:
    x0 = jax.device_put(x0, NamedSharding(mesh, P(AXIS)))
  if callback is not None:
    from rpd.engine_segments import run_segmented
    out, stopped, k_done = run_segmented(problem, rule, tx, int(K), record_every,
                                         track_average, instrument, mesh, x0, gamma, key,
                                         callback)
    return _result(out, rule, problem, k_done, many=False, stopped=stopped)
  out = _run_jit(problem, x0, gamma, key, rule=rule, tx=tx, K=int(K), record_every=record_every,
                 track=track_average, instrument=instrument, mesh=mesh)
  return _result(out, rule, problem, int(K), many=False)


@functools.partial(jax.jit, static_argnames=("rule", "tx", "K", "record_every", "track"))
def _sweep_jit(problem, x0s, gammas, keys, *, rule, tx, K, record_every, track):
  f = functools.partial(_run_local, problem, rule, tx, None, K, record_every, track, False)
  return jax.vmap(f)(x0s, gammas, keys)


def sweep(problem: Problem, rule: Rule, *, gammas, seeds, K: int, optimizer="sgd",
          record_every: int | None = None, x0=None, track_average: bool = False) -> RunResult:
  """Run a batch of ``(gamma, seed)`` configurations as one vmapped, compiled program.

  Equal to calling :func:`run` with ``key = jax.random.key(seed)`` for each pair.

  Args:
    gammas: step sizes, shape ``(N,)``.
    seeds: integer seeds, shape ``(N,)``.
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
  tx = get_optimizer(optimizer)
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  if x0 is None:
    x0s = jax.vmap(problem.init)(keys)  # as run() does with each key
  else:
    x0s = jnp.broadcast_to(jnp.asarray(x0), (len(seeds),) + jnp.shape(x0))
  out = _sweep_jit(problem, x0s, jnp.asarray(gammas, x0s.dtype), keys, rule=rule, tx=tx,
                   K=int(K), record_every=record_every, track=track_average)
  return _result(out, rule, problem, int(K), many=True)


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
