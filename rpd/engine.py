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
* Delay buffers are owned by the engine and sized by what the rule can read:
  - iteration rules (:class:`rpd.rules.IterationRule`) keep an *undo log* of the last
    ``tau_max`` block updates (the block index, the value it overwrote, the iteration):
    ``tau_max * D`` numbers, at most ``(tau_max + 1) d / S + d``. ``x_hat_j`` is the
    overwritten value of the earliest logged update of block ``j`` at an iteration
    ``>= k - tau_kj``, else the current ``x_j``.
  - program rules (:class:`rpd.rules.ProgramRule`) keep ``R`` microbatch slots of ``S x D``:
    a slot holds the blocks its microbatch has read (weight stashing) and, after the
    microbatch's gradient event, its pending gradient. PipeDream: ``R = S`` slots, ``S d``
    numbers, below the ``(S + 1) d`` budget.
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
from typing import Any, Callable

import numpy as np
import jax
import jax.numpy as jnp
import optax
from jax.sharding import NamedSharding, PartitionSpec as P

from rpd.problems.base import Problem
from rpd.rules.base import IterationRule, Rule
from rpd.rules.pipedream import ProgramRule

AXIS = "stage"
_SAMPLE_OFFSET = 1 << 20  # sample keys of microbatches n >= -2**20 are fold_in(root, n + offset)

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


def select_key(key: jax.Array, k) -> jax.Array:
  """The key an iteration rule receives at iteration ``k``."""
  return jax.random.fold_in(jax.random.split(key)[0], k)


def sample_key(key: jax.Array, n) -> jax.Array:
  """The key of the stochastic sample of iteration (or microbatch) ``n``."""
  return jax.random.fold_in(jax.random.split(key)[1], jnp.asarray(n) + _SAMPLE_OFFSET)


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


# ---------------------------------------------------------------------------------------
# Layout: which blocks this device holds (all of them when unsharded).


@dataclasses.dataclass(frozen=True)
class _Layout:
  S: int
  S_loc: int
  sharded: bool

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


def _sq(a):
  return jnp.sum(jnp.square(a))


# ---------------------------------------------------------------------------------------
# Per-block optimizer updates.


def _block_update(tx, opt, x_loc, li, g_i, gamma, owned, frozen):
  """Update local block ``li`` with gradient ``g_i`` (if ``owned`` and not ``frozen``)."""
  state_i = jax.tree.map(lambda a: a[li], opt)
  u_i, new_state_i = tx.update(g_i, state_i, x_loc[li])
  new_x_i = x_loc[li] - gamma * u_i
  bad = ~jnp.all(jnp.isfinite(new_x_i))
  apply = owned & ~frozen & ~bad
  x_loc = x_loc.at[li].set(jnp.where(apply, new_x_i, x_loc[li]))
  opt = jax.tree.map(lambda a, s: a.at[li].set(jnp.where(apply, s, a[li])), opt, new_state_i)
  return x_loc, opt, owned & ~frozen & bad


def _group_update(tx, opt, x_loc, lis, g_rows, gamma, owned, frozen, S_loc):
  """Update distinct local blocks ``lis`` at once (updates of distinct blocks commute).

  Blocks not ``owned`` by this device are gathered at a clipped index and dropped on write.
  """
  state = jax.tree.map(lambda a: a[lis], opt)
  u, new_state = jax.vmap(tx.update)(g_rows, state, x_loc[lis])
  new_x = x_loc[lis] - gamma * u
  bad = ~jnp.all(jnp.isfinite(new_x), axis=-1)
  apply = owned & ~frozen & ~bad
  dst = jnp.where(apply, lis, S_loc)  # out of range: dropped
  x_loc = x_loc.at[dst].set(new_x, mode="drop")
  opt = jax.tree.map(lambda a, s: a.at[dst].set(s, mode="drop"), opt, new_state)
  return x_loc, opt, jnp.any(owned & ~frozen & bad)


# ---------------------------------------------------------------------------------------
# Iteration rules: undo log.


def _log_read(rule_T, log, x_loc, tau_loc, k, lay):
  """``x_hat_j = x_j^{k - tau_j}`` for the local blocks, from the undo log."""
  if rule_T == 0:
    return x_loc
  blk, it, old = log["blk"], log["it"], log["old"]
  j = jnp.arange(lay.S_loc, dtype=jnp.int32)
  valid = (blk[None, :] == j[:, None]) & (it[None, :] >= (k - tau_loc)[:, None])  # S_loc x T
  big = jnp.iinfo(jnp.int32).max
  t_star = jnp.argmin(jnp.where(valid, it[None, :], big), axis=1)
  has = jnp.any(valid, axis=1)
  return jnp.where(has[:, None], old[t_star], x_loc)


def _iteration_init(rule, x_loc, lay):
  T = rule.tau_max
  if T == 0:
    return {}
  return {"blk": jnp.full((T,), -1, jnp.int32), "it": jnp.full((T,), -1, jnp.int32),
          "old": jnp.zeros((T,) + x_loc.shape[1:], x_loc.dtype)}


def _iteration_step(rule, problem, tx, lay, gamma, key, track, instrument, carry):
  """One iteration of an :class:`IterationRule`."""
  x, opt, log, rstate, k, flags, sums = carry
  kk = k.astype(jnp.int32)
  i, tau, rstate = rule.select(rstate, select_key(key, kk), kk)
  off = lay.offset()
  tau_loc = lay.local(tau)
  xhat_loc = _log_read(rule.tau_max, log, x, tau_loc, kk, lay)
  xhat = lay.gather(xhat_loc)
  g = problem.grad(xhat, problem.sample(sample_key(key, kk)))
  if track:
    xfull = lay.gather(x)
    gf = problem.full_grad(xfull)
    sums = sums + jnp.stack([_sq(gf), _sq(xfull - xhat), _sq(gf - problem.full_grad(xhat))])
  li = i - off
  owned = (li >= 0) & (li < lay.S_loc)
  li = jnp.clip(li, 0, lay.S_loc - 1)
  old_i = x[li]
  diverged, at = flags
  x, opt, bad = _block_update(tx, opt, x, li, g[i], gamma, owned, diverged)
  bad = lay.psum(bad.astype(jnp.int32)) > 0
  at = jnp.where(bad & ~diverged, kk, at)
  diverged = diverged | bad
  if rule.tau_max > 0:
    pos = kk % rule.tau_max
    log = {"blk": log["blk"].at[pos].set(jnp.where(owned, li.astype(jnp.int32), -1)),
           "it": log["it"].at[pos].set(kk),
           "old": log["old"].at[pos].set(old_i)}
  out = (i[None], tau[None]) if instrument else None
  return (x, opt, log, rstate, k + 1, (diverged, at), sums), out


def _iteration_stale_point(rule, x, log, rstate, key, k, lay):
  kk = k.astype(jnp.int32)
  _, tau, _ = rule.select(rstate, select_key(key, kk), kk)
  return lay.gather(_log_read(rule.tau_max, log, x, lay.local(tau), kk, lay))


# ---------------------------------------------------------------------------------------
# Program rules: microbatch slots.


def _groups(events, reorder: bool):
  """Split a period into runs ``("G", o)``, ``("R", [(o, b)...])``, ``("U", [(o, b)...])``.

  Without ``reorder`` every read or update is its own run, in time order (the exact
  iteration count of every event is needed for instrumentation and per-iteration metrics).
  With ``reorder`` the events are regrouped into few large runs by a topological sort that
  keeps every dependency: on each block, reads and updates stay in order; a gradient event
  ``G(o)`` follows the reads of microbatch ``o`` in the period and precedes its updates.
  Reads and updates of different blocks commute, so the parameters are unchanged.
  """
  if not reorder:
    return [("G", o) if kind == "G" else (kind, [(o, b)]) for kind, o, b in events]
  preds = [set() for _ in events]
  last_on_block: dict = {}
  reads_of: dict = {}
  g_of: dict = {}
  for e, (kind, o, b) in enumerate(events):
    if kind == "G":
      preds[e] |= reads_of.get(o, set())
      g_of[o] = e
      continue
    if b in last_on_block:
      preds[e].add(last_on_block[b])
    last_on_block[b] = e
    if kind == "R":
      reads_of.setdefault(o, set()).add(e)
    elif o in g_of:
      preds[e].add(g_of[o])
  done: set = set()
  out = []
  while len(done) < len(events):
    ready = [e for e in range(len(events)) if e not in done and preds[e] <= done]
    gs = [e for e in ready if events[e][0] == "G"]
    if gs:
      out.append(("G", events[gs[0]][1]))
      done.add(gs[0])
      continue
    by_kind = {"R": [e for e in ready if events[e][0] == "R"],
               "U": [e for e in ready if events[e][0] == "U"]}
    kind = max(by_kind, key=lambda kd: len(by_kind[kd]))
    out.append((kind, [events[e][1:] for e in by_kind[kind]]))
    done.update(by_kind[kind])
  return out


def _program_init(rule, problem, x_loc, key, lay, track):
  prog = rule.program()
  R = prog.R
  slots = jnp.broadcast_to(x_loc, (R,) + x_loc.shape)
  if prog.init_pending:
    xfull = lay.gather(x_loc)
    for o in prog.init_pending:
      g = problem.grad(xfull, problem.sample(sample_key(key, o)))
      slots = slots.at[o % R].set(lay.local(g))
  read_k = jnp.zeros((R, rule.S), jnp.int32)
  for o, b, kv in prog.init_reads:
    read_k = read_k.at[o % R, b].set(kv)
  state = {"slots": slots, "read_k": read_k, "n": jnp.zeros((), jnp.int32)}
  if track:
    state["xhat"] = jnp.broadcast_to(x_loc, (R,) + x_loc.shape)
  return state


def _program_step(rule, problem, tx, lay, gamma, key, track, instrument, carry):
  """One period of a :class:`ProgramRule`: ``q`` gradients and ``q * S`` block updates."""
  x, opt, st, rstate, k, flags, sums = carry
  prog = rule.program()
  R, S = prog.R, prog.S
  n = st["n"]
  slots, read_k = st["slots"], st["read_k"]
  xhat_slots = st.get("xhat")
  diverged, at = flags
  off = lay.offset()
  kk = k.astype(jnp.int32)
  blocks_out, taus_out = [], []
  for kind, members in _groups(prog.events, reorder=not (track or instrument)):
    if kind == "G":
      r = (n + members) % R
      if track:
        xhat_slots = xhat_slots.at[r].set(slots[r])
      xhat = lay.gather(slots[r])
      g = problem.grad(xhat, problem.sample(sample_key(key, n + members)))
      slots = slots.at[r].set(lay.local(g))
    elif kind == "R":
      rs = jnp.stack([(n + o) % R for o, _ in members])
      bs = np.array([b for _, b in members])
      lbs = bs - off
      owned = (lbs >= 0) & (lbs < lay.S_loc)
      lbs = jnp.clip(lbs, 0, lay.S_loc - 1)
      if lay.sharded:
        dst = jnp.where(owned, lbs, lay.S_loc)  # other devices' blocks: dropped
        slots = slots.at[rs, dst].set(x[lbs], mode="drop")
      else:
        slots = slots.at[rs, lbs].set(x[lbs])
      if instrument:
        read_k = read_k.at[rs, bs].set(kk)
    else:  # updates
      rs = jnp.stack([(n + o) % R for o, _ in members])
      bs = np.array([b for _, b in members])
      lbs = bs - off
      owned = (lbs >= 0) & (lbs < lay.S_loc)
      lbs = jnp.clip(lbs, 0, lay.S_loc - 1)
      if len(members) == 1:
        r, li = rs[0], lbs[0]
        if track:
          xfull = lay.gather(x)
          xh = lay.gather(xhat_slots[r])
          gf = problem.full_grad(xfull)
          sums = sums + jnp.stack([_sq(gf), _sq(xfull - xh), _sq(gf - problem.full_grad(xh))])
        if instrument:
          blocks_out.append(jnp.asarray(bs[0], jnp.int32))
          taus_out.append(kk - read_k[r])
        x, opt, bad = _block_update(tx, opt, x, li, slots[r, li], gamma,
                                    jnp.asarray(owned[0]) if not lay.sharded else owned[0],
                                    diverged)
      else:
        x, opt, bad = _group_update(tx, opt, x, lbs, slots[rs, lbs], gamma, owned, diverged,
                                    lay.S_loc)
      bad = lay.psum(bad.astype(jnp.int32)) > 0
      at = jnp.where(bad & ~diverged, kk, at)
      diverged = diverged | bad
      kk = kk + len(members)
  st = dict(st, slots=slots, read_k=read_k, n=n + prog.q)
  if track:
    st["xhat"] = xhat_slots
  out = (jnp.stack(blocks_out), jnp.stack(taus_out)) if instrument else None
  return (x, opt, st, rstate, kk.astype(k.dtype), (diverged, at), sums), out


def _program_stale_point(rule, st, lay):
  prog = rule.program()
  return lay.gather(st["slots"][st["n"] % prog.R])


# ---------------------------------------------------------------------------------------
# The driver.


def buffer_floats(rule: Rule, D: int) -> int:
  """Numbers held in the delay buffers for ``rule`` with padded block width ``D``."""
  if isinstance(rule, ProgramRule):
    prog = rule.program()
    return prog.R * prog.S * D
  return rule.tau_max * D


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


def _metrics(problem, x, xhat):
  gf = problem.full_grad(x)
  return jnp.stack([problem.full_loss(x), _sq(gf), _sq(x - xhat),
                    _sq(gf - problem.full_grad(xhat))])


def _run_local(problem, rule, tx, lay, K, record_every, track, instrument, x0_loc, gamma, key):
  """The whole run on this device's blocks (called directly, or inside ``shard_map``)."""
  n_rec, inner = _check_K(rule, K, record_every)
  is_prog = isinstance(rule, ProgramRule)
  opt = jax.vmap(tx.init)(x0_loc)
  rstate = () if is_prog else rule.init_state()
  if is_prog:
    buf = _program_init(rule, problem, x0_loc, key, lay, track)
    step = functools.partial(_program_step, rule, problem, tx, lay, gamma, key, track,
                             instrument)
  else:
    buf = _iteration_init(rule, x0_loc, lay)
    step = functools.partial(_iteration_step, rule, problem, tx, lay, gamma, key, track,
                             instrument)
  dtype = x0_loc.dtype
  carry = (x0_loc, opt, buf, rstate, jnp.zeros((), jnp.int32),
           (jnp.zeros((), bool), jnp.full((), -1, jnp.int32)), jnp.zeros((3,), dtype))

  def record(carry):
    x, _, buf, rstate, k, _, sums = carry
    if is_prog:
      xhat = _program_stale_point(rule, buf, lay)
    else:
      xhat = _iteration_stale_point(rule, x, buf, rstate, key, k, lay)
    m = _metrics(problem, lay.gather(x), xhat)
    avg = sums / jnp.maximum(k, 1).astype(dtype)
    avg = jnp.where(k > 0, avg, jnp.nan)
    return jnp.concatenate([m, avg]), k

  def outer(carry, _):
    carry, out = jax.lax.scan(lambda c, _: step(c), carry, None, length=inner)
    return carry, (record(carry), out)

  m0 = record(carry)
  carry, (recs, outs) = jax.lax.scan(outer, carry, None, length=n_rec)
  vals = jnp.concatenate([m0[0][None], recs[0]])
  ks = jnp.concatenate([m0[1][None], recs[1]])
  x, _, _, _, _, (diverged, at), _ = carry
  realized = None
  if instrument:
    blocks, taus = outs
    realized = (blocks.reshape(-1), taus.reshape(-1, rule.S))
  return x, vals, ks, diverged, at, realized


_NAMES = ("loss", "grad_norm_sq", "stale_x_err", "stale_grad_err",
          "avg_grad_norm_sq", "avg_stale_x_err", "avg_stale_grad_err")


@functools.partial(jax.jit, static_argnames=("rule", "tx", "K", "record_every", "track",
                                             "instrument", "mesh"))
def _run_jit(problem, x0, gamma, key, *, rule, tx, K, record_every, track, instrument, mesh):
  S = rule.S
  if mesh is None:
    lay = _Layout(S, S, False)
    return _run_local(problem, rule, tx, lay, K, record_every, track, instrument, x0, gamma,
                      key)
  n_dev = mesh.shape[AXIS]
  lay = _Layout(S, S // n_dev, True)
  def f(problem, x0_loc, gamma, key):
    return _run_local(problem, rule, tx, lay, K, record_every, track, instrument, x0_loc,
                      gamma, key)

  out_specs = (P(AXIS), P(), P(), P(), P(), (P(), P()) if instrument else None)
  return jax.shard_map(f, mesh=mesh, in_specs=(P(), P(AXIS), P(), P()), out_specs=out_specs,
                       check_vma=False)(problem, x0, gamma, key)


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


def _result(out, rule, problem, K, many: bool) -> RunResult:
  x, vals, ks, diverged, at, realized = jax.device_get(out)
  vals = np.asarray(vals)
  metrics = {"k": np.asarray(ks)}
  for c, name in enumerate(_NAMES):
    metrics[name] = vals[..., c]
  real = None
  if realized is not None:
    real = {"block": np.asarray(realized[0]), "tau": np.asarray(realized[1])}
  return RunResult(x_SxD=np.asarray(x), metrics=metrics, diverged=np.asarray(diverged) if many
                   else bool(diverged), diverged_at=np.asarray(at) if many else int(at),
                   buffer_floats=buffer_floats(rule, problem.D), K=K, S=rule.S, rule=rule.name,
                   realized=real)


def run(problem: Problem, rule: Rule, *, gamma: float, K: int, key: jax.Array,
        optimizer="sgd", record_every: int | None = None, x0=None, mesh=None,
        track_average: bool = False, instrument: bool = False) -> RunResult:
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

  Returns:
    a :class:`RunResult`.

  Raises:
    ValueError: bad ``gamma``, ``K``, ``record_every``, mesh, or mismatched ``S``.
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
  out = _run_jit(problem, x0, gamma, key, rule=rule, tx=tx, K=int(K), record_every=record_every,
                 track=track_average, instrument=instrument, mesh=mesh)
  return _result(out, rule, problem, int(K), many=False)


@functools.partial(jax.jit, static_argnames=("rule", "tx", "K", "record_every", "track"))
def _sweep_jit(problem, x0, gammas, keys, *, rule, tx, K, record_every, track):
  lay = _Layout(rule.S, rule.S, False)
  f = functools.partial(_run_local, problem, rule, tx, lay, K, record_every, track, False, x0)
  return jax.vmap(f)(gammas, keys)


def sweep(problem: Problem, rule: Rule, *, gammas, seeds, K: int, optimizer="sgd",
          record_every: int | None = None, x0=None, track_average: bool = False) -> RunResult:
  """Run a batch of ``(gamma, seed)`` configurations as one vmapped, compiled program.

  Equal to calling :func:`run` with ``key = jax.random.key(seed)`` for each pair.

  Args:
    gammas: step sizes, shape ``(N,)``.
    seeds: integer seeds, shape ``(N,)``.
    (others as in :func:`run`; ``x0`` is shared, default ``problem.init`` of the first key.)

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
    x0 = problem.init(keys[0])
  x0 = jnp.asarray(x0)
  out = _sweep_jit(problem, x0, jnp.asarray(gammas, x0.dtype), keys, rule=rule, tx=tx,
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
  lay = _Layout(rule.S, rule.S, False)
  is_prog = isinstance(rule, ProgramRule)

  def init(x0, key):
    opt = jax.vmap(tx.init)(x0)
    if is_prog:
      buf = _program_init(rule, problem, x0, key, lay, False)
    else:
      buf = _iteration_init(rule, x0, lay)
    rstate = () if is_prog else rule.init_state()
    return (x0, opt, buf, rstate, jnp.zeros((), jnp.int32),
            (jnp.zeros((), bool), jnp.full((), -1, jnp.int32)), jnp.zeros((3,), x0.dtype))

  def one(x0, key, gamma):
    carry = init(x0, key)
    step = _program_step if is_prog else _iteration_step
    return step(rule, problem, tx, lay, gamma, key, False, False, carry)[0]

  x0 = problem.init(jax.random.key(0))
  key = jax.random.key(0)
  before = jax.eval_shape(init, x0, key)
  after = jax.eval_shape(one, x0, key, jnp.asarray(0.1, x0.dtype))
  return before, after
