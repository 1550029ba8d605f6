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
  calls ``rule.init`` once and ``rule.step`` per scan step with a :class:`Context` through
  which the rule takes gradients and applies block updates. The delay buffers live in the
  rule families that need them: iteration rules keep an undo log of the last ``tau_max``
  block updates (:class:`rpd.rules.buffers.UndoLog`, ``tau_max * D`` numbers), program
  rules keep ``R`` microbatch slots of ``S x D`` (:mod:`rpd.rules.program_rule`,
  PipeDream ``R = S``: ``S d`` numbers, below the ``(S + 1) d`` budget).
* The scan carry is one named structure, :class:`Carry`.
* Delay check: every delay vector a rule hands to :meth:`Context.update_block` must lie in
  ``[0, tau_max]``; the first violation is recorded and :func:`run` raises
  :class:`rpd.errors.DelayRangeError` naming it (program rules' delays are checked
  statically when their program is compiled, and at run time when instrumented).
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
negative for microbatches in flight at iteration 0). Tests reuse these helpers.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rpd.errors import DelayRangeError
from rpd.keys import sample_key, select_key  # noqa: F401 (re-exported)
from rpd.problems.base import Problem
from rpd.rules.base import Rule

AXIS = "stage"

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


# ---------------------------------------------------------------------------------------
# The carry and the context a rule steps with.


class Carry(NamedTuple):
  """The scan carry (this device's part of it under ``shard_map``).

  Attributes:
    x: ``(S_loc, D)`` the blocks.
    opt: the per-block optimizer state (leading axis ``S_loc``).
    rule: the rule's state (``rule.init``).
    k: int32, iterations (block updates) done.
    diverged: a non-finite update appeared (later updates are skipped).
    diverged_at: the iteration of the first non-finite update (``-1``: none).
    bad_delay_at: the first iteration whose delays left ``[0, tau_max]`` (``-1``: none).
    bad_delay: the offending delay.
    sums: ``(3,)`` running sums of the per-iteration metrics (``track_average``).
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


def _sq(a):
  return jnp.sum(jnp.square(a))


@dataclasses.dataclass
class Context:
  """What a rule steps with: the problem, the block layout, gradients and block updates.

  Built by the engine for each trace of a step; the rule calls :meth:`grad`,
  :meth:`update_block` and :meth:`update_blocks`. Blocks are held locally as
  ``(S_loc, D)`` (all ``S`` unsharded); gradients are taken at gathered ``S x D`` points.

  Attributes:
    problem, tx, gamma, tau_max: the run's problem, optimizer, step size and the rule's
      largest delay.
    S, S_loc, sharded: blocks, blocks on this device, whether under ``shard_map``.
    track, instrument: accumulate per-iteration metrics / record realized delays.
  """

  problem: Problem
  tx: optax.GradientTransformation
  gamma: Any
  tau_max: int
  S: int
  S_loc: int
  sharded: bool
  track: bool = False
  instrument: bool = False
  realized: list = dataclasses.field(default_factory=list)

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
  def update_block(self, carry: Carry, i, g_i, *, at=None, xhat=None, tau=None) -> Carry:
    """One iteration: ``x_i <- x_i - gamma * opt(g_i)`` (block ``i``, global index).

    Args:
      carry: the carry.
      i: the updated block (int scalar, static or traced).
      g_i: ``(D,)`` its (transformed) gradient.
      at: the iteration this update is, for ``diverged_at`` (default ``carry.k``).
      xhat: the gathered read point of the update (needed with ``track``).
      tau: its ``(S,)`` delays: checked against ``[0, tau_max]`` and, with ``instrument``,
        recorded.
    """
    k = carry.k
    at = k if at is None else at
    carry = self._check_delays(carry, tau, k)
    if self.track:
      xfull = self.gather(carry.x)
      gf = self.problem.full_grad(xfull)
      carry = carry._replace(sums=carry.sums + jnp.stack(
          [_sq(gf), _sq(xfull - xhat), _sq(gf - self.problem.full_grad(xhat))]))
    if self.instrument:
      self.realized.append((jnp.asarray(i, jnp.int32), jnp.asarray(tau, jnp.int32)))
    li, owned = self.own(i)
    owned = jnp.asarray(owned)
    x, opt = carry.x, carry.opt
    state_i = jax.tree.map(lambda a: a[li], opt)
    u_i, new_state_i = self.tx.update(g_i, state_i, x[li])
    new_x_i = x[li] - self.gamma * u_i
    bad = ~jnp.all(jnp.isfinite(new_x_i))
    apply = owned & ~carry.diverged & ~bad
    x = x.at[li].set(jnp.where(apply, new_x_i, x[li]))
    opt = jax.tree.map(lambda a, s: a.at[li].set(jnp.where(apply, s, a[li])), opt, new_state_i)
    bad = self.psum((owned & ~carry.diverged & bad).astype(jnp.int32)) > 0
    return carry._replace(x=x, opt=opt, k=k + 1, diverged=carry.diverged | bad,
                          diverged_at=jnp.where(bad & ~carry.diverged, at, carry.diverged_at))

  def update_blocks(self, carry: Carry, blocks: np.ndarray, g_rows, pos) -> Carry:
    """Several iterations at once on distinct blocks (their updates commute).

    ``blocks``: static global indices; ``g_rows``: their gradients; ``pos``: the members'
    iterations in time order. As in a run one update at a time, a non-finite update stops
    every member at or after it (on every device).
    """
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
    return carry._replace(x=x, opt=opt, k=carry.k + len(blocks),
                          diverged=carry.diverged | bad,
                          diverged_at=jnp.where(bad & ~carry.diverged, first, carry.diverged_at))

  def _check_delays(self, carry: Carry, tau, k) -> Carry:
    if tau is None:
      return carry
    tau = jnp.asarray(tau, jnp.int32)
    hi, lo = jnp.max(tau), jnp.min(tau)
    out = (hi > self.tau_max) | (lo < 0)
    first = out & (carry.bad_delay_at < 0)
    return carry._replace(bad_delay_at=jnp.where(first, k, carry.bad_delay_at),
                          bad_delay=jnp.where(first, jnp.where(lo < 0, lo, hi), carry.bad_delay))


# ---------------------------------------------------------------------------------------
# The driver.


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


def _context(problem, rule, tx, gamma, n_dev, track, instrument) -> Context:
  S = rule.S
  return Context(problem=problem, tx=tx, gamma=gamma, tau_max=int(rule.tau_max), S=S,
                 S_loc=S // (n_dev or 1), sharded=n_dev is not None, track=track,
                 instrument=instrument)


def _init_carry(ctx: Context, rule: Rule, x0_loc, key) -> Carry:
  i32 = lambda v: jnp.full((), v, jnp.int32)
  return Carry(x=x0_loc, opt=jax.vmap(ctx.tx.init)(x0_loc), rule=rule.init(x0_loc, key, ctx),
               k=i32(0), diverged=jnp.zeros((), bool), diverged_at=i32(-1),
               bad_delay_at=i32(-1), bad_delay=i32(0), sums=jnp.zeros((3,), x0_loc.dtype))


def _metrics(problem, x, xhat):
  gf = problem.full_grad(x)
  return jnp.stack([problem.full_loss(x), _sq(gf), _sq(x - xhat),
                    _sq(gf - problem.full_grad(xhat))])


def _record(ctx: Context, rule: Rule, carry: Carry, key):
  """Metrics at the current iterate: ``(values (7,), k)``."""
  xhat = rule.read_point(carry, key, ctx)
  m = _metrics(ctx.problem, ctx.gather(carry.x), xhat)
  k = carry.k
  avg = carry.sums / jnp.maximum(k, 1).astype(carry.sums.dtype)
  avg = jnp.where(k > 0, avg, jnp.nan)
  return jnp.concatenate([m, avg]), k


def _step(ctx: Context, rule: Rule, key, carry: Carry):
  """One engine step of the rule; ``(carry, realized (blocks, taus) or None)``."""
  ctx = dataclasses.replace(ctx, realized=[])
  carry = rule.step(carry, key, ctx)
  out = None
  if ctx.instrument:
    out = (jnp.stack([b for b, _ in ctx.realized]), jnp.stack([t for _, t in ctx.realized]))
  return carry, out


def _advance(ctx: Context, rule: Rule, carry: Carry, key, inner: int, n_rec: int):
  """``n_rec`` records of ``inner`` steps each: ``(carry, (values, ks), realized)``."""
  def outer(carry, _):
    carry, out = jax.lax.scan(lambda c, _: _step(ctx, rule, key, c), carry, None,
                              length=inner)
    return carry, (_record(ctx, rule, carry, key), out)

  carry, (recs, outs) = jax.lax.scan(outer, carry, None, length=n_rec)
  return carry, recs, outs


def _run_local(problem, rule, tx, n_dev, K, record_every, track, instrument, x0_loc, gamma,
               key):
  """The whole run on this device's blocks (called directly, or inside ``shard_map``)."""
  n_rec, inner = _check_K(rule, K, record_every)
  ctx = _context(problem, rule, tx, gamma, n_dev, track, instrument)
  carry = _init_carry(ctx, rule, x0_loc, key)
  m0 = _record(ctx, rule, carry, key)
  carry, recs, outs = _advance(ctx, rule, carry, key, inner, n_rec)
  vals = jnp.concatenate([m0[0][None], recs[0]])
  ks = jnp.concatenate([m0[1][None], recs[1]])
  realized = None
  if instrument:
    blocks, taus = outs
    realized = (blocks.reshape(-1), taus.reshape(-1, rule.S))
  return (carry.x, vals, ks, carry.diverged, carry.diverged_at, carry.bad_delay_at,
          carry.bad_delay, realized)


_NAMES = ("loss", "grad_norm_sq", "stale_x_err", "stale_grad_err",
          "avg_grad_norm_sq", "avg_stale_x_err", "avg_stale_grad_err")


@functools.partial(jax.jit, static_argnames=("rule", "tx", "K", "record_every", "track",
                                             "instrument", "mesh"))
def _run_jit(problem, x0, gamma, key, *, rule, tx, K, record_every, track, instrument, mesh):
  if mesh is None:
    return _run_local(problem, rule, tx, None, K, record_every, track, instrument, x0, gamma,
                      key)
  n_dev = mesh.shape[AXIS]
  def f(problem, x0_loc, gamma, key):
    return _run_local(problem, rule, tx, n_dev, K, record_every, track, instrument, x0_loc,
                      gamma, key)

  out_specs = (P(AXIS), P(), P(), P(), P(), P(), P(), (P(), P()) if instrument else None)
  return jax.shard_map(f, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()), out_specs=out_specs,
                       check_vma=False)(problem, x0, gamma, key)


# Segmented runs: the same steps, a record at a time, the carry kept between calls. Under
# shard_map every leaf of the carry gets a leading device axis (sharded over it).


def _dev_in(tree):
  return jax.tree.map(lambda a: a[0], tree)


def _dev_out(tree):
  return jax.tree.map(lambda a: a[None], tree)


@functools.partial(jax.jit, static_argnames=("rule", "tx", "track", "instrument", "mesh"))
def _start_jit(problem, x0, gamma, key, *, rule, tx, track, instrument, mesh):
  def f(problem, x0_loc, gamma, key, n_dev):
    ctx = _context(problem, rule, tx, gamma, n_dev, track, instrument)
    carry = _init_carry(ctx, rule, x0_loc, key)
    return carry, _record(ctx, rule, carry, key)
  if mesh is None:
    return f(problem, x0, gamma, key, None)
  n_dev = mesh.shape[AXIS]
  g = lambda p, x, gm, k: (lambda c, r: (_dev_out(c), r))(*f(p, x, gm, k, n_dev))
  return jax.shard_map(g, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()),
                       out_specs=(P(AXIS), P()), check_vma=False)(problem, x0, gamma, key)


@functools.partial(jax.jit, static_argnames=("rule", "tx", "inner", "record", "track",
                                             "instrument", "mesh"), donate_argnames=("carry",))
def _segment_jit(problem, carry, gamma, key, *, rule, tx, inner, record, track, instrument,
                 mesh):
  def f(problem, carry, gamma, key, n_dev):
    ctx = _context(problem, rule, tx, gamma, n_dev, track, instrument)
    carry, outs = jax.lax.scan(lambda c, _: _step(ctx, rule, key, c), carry, None,
                               length=inner)
    return carry, _record(ctx, rule, carry, key) if record else None, outs
  if mesh is None:
    return f(problem, carry, gamma, key, None)
  n_dev = mesh.shape[AXIS]
  def g(p, c, gm, k):
    c, rec, outs = f(p, _dev_in(c), gm, k, n_dev)
    return _dev_out(c), rec, outs
  out_specs = (P(AXIS), (P(), P()) if record else None, (P(), P()) if instrument else None)
  return jax.shard_map(g, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()), out_specs=out_specs,
                       check_vma=False)(problem, carry, gamma, key)


def _chunk(inner: int) -> int:
  """Steps per segment: about a sixteenth of a record interval (a divisor of it)."""
  target = max(1, inner // 16)
  c = max(d for d in range(1, target + 1) if inner % d == 0)
  return c if c * 64 >= inner else inner


def _run_segmented(problem, rule, tx, K, record_every, track, instrument, mesh, x0, gamma, key,
                   callback):
  """The run in segments of about a sixteenth of a record interval (two compiled programs:
  steps only, steps and a record); ``callback(k, metrics_so_far)`` may stop it (``True``)."""
  n_rec, inner = _check_K(rule, K, record_every)
  chunk = _chunk(inner)
  kw = dict(rule=rule, tx=tx, track=track, instrument=instrument, mesh=mesh)
  carry, (v0, k0) = _start_jit(problem, x0, gamma, key, **kw)
  vals, ks, outs = [np.asarray(v0)], [int(k0)], []
  stopped, k_done = False, 0
  ups = rule.updates_per_step
  for _ in range(n_rec):
    for c in range(inner // chunk):
      if callback is not None and callback(k_done, _metric_dict(np.stack(vals),
                                                                np.asarray(ks))):
        stopped = True
        break
      last = c == inner // chunk - 1
      carry, rec, out = _segment_jit(problem, carry, gamma, key, inner=chunk, record=last,
                                     **kw)
      k_done += chunk * ups
      outs.append(jax.device_get(out))
      if last:
        vals.append(np.asarray(rec[0]))
        ks.append(int(rec[1]))
    if stopped:
      break
  if callback is not None and not stopped:
    callback(k_done, _metric_dict(np.stack(vals), np.asarray(ks)))
  if stopped and k_done != ks[-1]:  # stopped between records: record where it stopped
    carry, rec, _ = _segment_jit(problem, carry, gamma, key, inner=0, record=True, **kw)
    vals.append(np.asarray(rec[0]))
    ks.append(int(rec[1]))
  x = jax.device_get(carry.x)
  flags = [jax.device_get(getattr(carry, n)) for n in
           ("diverged", "diverged_at", "bad_delay_at", "bad_delay")]
  if mesh is not None:
    x = x.reshape((rule.S,) + x.shape[2:])
    flags = [f[0] for f in flags]
  realized = None
  if instrument:
    realized = (np.concatenate([np.zeros((0,), np.int32)] +
                               [o[0].reshape(-1) for o in outs]),
                np.concatenate([np.zeros((0, rule.S), np.int32)] +
                               [o[1].reshape(-1, rule.S) for o in outs]))
  return (x, np.stack(vals), np.asarray(ks), *flags, realized), stopped, k_done


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
    out, stopped, k_done = _run_segmented(problem, rule, tx, int(K), record_every,
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
    return _init_carry(_context(problem, rule, tx, gamma, None, False, False), rule, x0, key)

  def one(x0, key, gamma):
    ctx = _context(problem, rule, tx, gamma, None, False, False)
    return _step(ctx, rule, key, _init_carry(ctx, rule, x0, key))[0]

  x0 = problem.init(jax.random.key(0))
  key = jax.random.key(0)
  gamma = jnp.asarray(0.1, x0.dtype)
  return jax.eval_shape(init, x0, key, gamma), jax.eval_shape(one, x0, key, gamma)
