"""Program rules: a steady-state pipeline schedule run as an event program with weight stashing.

One engine step runs one period of a :class:`rpd.rules.program.Program`: ``q`` stochastic
gradients (one per microbatch, at the point the microbatch read) and ``q * S`` block updates.
The family owns ``R`` microbatch slots of ``S x D`` (``R * S * D`` numbers; PipeDream
``R = S``): a slot holds the blocks its microbatch has read (``R(o, b)``: ``slot[b] <- x_b``,
weight stashing) and, after the microbatch's gradient event ``G(o)``, its pending gradient,
whose block ``b`` is applied at ``U(o, b)``. Microbatch ``n`` draws sample ``n`` (``n`` may
be negative for microbatches in flight at iteration 0, which read ``x^0``).

Rules: ``pipedream`` (:class:`PipeDreamRule`), ``schedule:NAME`` for weight-stashing
schedules (:class:`rpd.rules.schedule.ScheduleRule`), ``sync`` (:class:`Synchronous`).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from rpd.keys import sample_key
from rpd.rules.base import IDENTITY, Hook, Rule, check_S, frozen
from rpd.rules.program import Program, schedule_program, zero_delay_program
from rpd.rules.registry import register_rule


class ProgramState(NamedTuple):
  """State of a :class:`ProgramRule`.

  Attributes:
    slots: ``(R, S_loc, D)`` microbatch slots (stashed reads, then pending gradients).
    read_k: ``(R, S)`` int32, iteration at which each slot's block was read (the realized
      delays).
    n: int32, the microbatch whose gradient event starts the next period.
    xhat: ``(R, S_loc, D)`` the read point of each slot's gradient (kept for the metrics
      and for mitigations that change the gradient), else ``None``.
    hook: the mitigation's state.
  """

  slots: jax.Array
  read_k: jax.Array
  n: jax.Array
  xhat: Any
  hook: Any


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


class ProgramRule(Rule):
  """A rule given by a periodic event program (:mod:`rpd.rules.program`).

  Subclasses implement :meth:`program` and declare the fields ``S``, ``name`` and
  ``hook``. One engine step runs one period (``K`` must be a multiple of ``q * S``).
  """

  hook: Hook = IDENTITY

  @abc.abstractmethod
  def program(self) -> Program:
    """The steady-state event program this rule runs."""

  @property
  def tau_max(self) -> int:
    return self.program().tau_max

  @property
  def updates_per_step(self) -> int:
    return self.program().updates_per_period

  @property
  def updates_per_gradient(self) -> int:
    return self.S

  def zero_delay(self) -> "ProgramRule":
    """The rule's own period made synchronous (:meth:`Program.synchronous`), same hook."""
    return FixedProgram(self.S, self.program().synchronous(), f"{self.name}@zero-delay",
                        self.hook)

  def buffer_floats(self, D: int) -> int:
    prog = self.program()
    xhat = prog.R * prog.S * D if self.hook.changes_grad else 0  # read points kept
    return prog.R * prog.S * D + xhat + self.hook.buffer_floats(self.S, D)

  def _keeps_xhat(self, ctx) -> bool:
    return bool(ctx.track or self.hook.changes_grad)

  def init(self, x0, key, ctx):
    prog = self.program()
    R = prog.R
    slots = jnp.broadcast_to(x0, (R,) + x0.shape)
    if prog.init_pending:
      # The warm-up gradients, all at x0, as one ``lax.scan`` over their microbatches: the
      # compiled program holds one gradient, not one per pending microbatch (up to S - 1).
      o_P = np.asarray(prog.init_pending, np.int32)
      if len(set((o_P % R).tolist())) != len(o_P):
        raise ValueError(f"{self.name}: two pending microbatches share a slot (R={R})")
      xfull = ctx.gather(x0)
      _, g_P = jax.lax.scan(lambda c, o: (c, ctx.local(ctx.grad(xfull, sample_key(key, o)))),
                            None, o_P)
      slots = slots.at[o_P % R].set(g_P)
    read_k_np = np.zeros((R, self.S), np.int32)  # static: a constant, not S^2 scatters
    for o, b, kv in prog.init_reads:
      read_k_np[o % R, b] = kv
    read_k = jnp.asarray(read_k_np)
    xhat = jnp.broadcast_to(x0, (R,) + x0.shape) if self._keeps_xhat(ctx) else None
    return ProgramState(slots, read_k, jnp.zeros((), jnp.int32), xhat, self.hook.init(x0))

  def _predict(self, hstate, xhat_loc, ctx):
    """The hook's read point from the stashed read (no-op without a read hook)."""
    if not self.hook.changes_read:
      return xhat_loc
    h = ctx.local(jnp.asarray(self.program().horizon(), jnp.int32))
    return self.hook.read(hstate, xhat_loc, h)

  def _scans_updates(self, ctx) -> bool:
    """Whether :meth:`step` runs the period's updates as a ``lax.scan`` (:meth:`_step_scanned`):
    with per-iteration metrics (``ctx.track``: every update is its own group, in time
    order), one gradient per period (``q = 1``), no mitigation and no sharding."""
    h = self.hook
    return (bool(ctx.track) and not ctx.sharded and self.program().q == 1
            and not (h.changes_read or h.changes_grad or h.observes))

  def _step_scanned(self, carry, key, ctx):
    """:meth:`step` for :meth:`_scans_updates`: the period's gradient event, then a
    ``lax.scan`` over its ``S`` updates, each followed by the reads before the next one.

    The same operations on the same values in the same order as the unrolled loop of
    :meth:`step` (its block, slot and iteration indices become scanned tables), so the
    iterates and metrics are the same bits; the compiled program holds one update instead
    of ``S`` (``tests/test_engine.py`` and the rules' common suite check it against the
    NumPy references; ``tests/test_experiments.py`` against the unrolled step).
    """
    prog = self.program()
    R, S = prog.R, self.S
    st = carry.rule
    n, slots, read_k, xhat_slots = st.n, st.slots, st.read_k, st.xhat
    k0 = carry.k
    assert prog.events[0][0] == "G" and sum(kd == "G" for kd, _, _ in prog.events) == 1
    o_g = prog.events[0][1]
    r = (n + o_g) % R
    xhat_slots = xhat_slots.at[r].set(slots[r])
    slots = slots.at[r].set(ctx.grad(ctx.gather(slots[r]), sample_key(key, n + o_g)))
    units: list = []  # per update: (o, b, reads after it [(o, b)...])
    for kind, o, b in prog.events[1:]:
      if kind == "U":
        units.append((o, b, []))
      else:  # a read: the period starts with G then U, so an update precedes it
        units[-1][2].append((o, b))
    width = max(1, max(len(rd) for _, _, rd in units))
    u_o = np.array([o for o, _, _ in units], np.int32)
    u_b = np.array([b for _, b, _ in units], np.int32)
    rd_o = np.zeros((len(units), width), np.int32)
    rd_b = np.zeros((len(units), width), np.int32)
    rd_on = np.zeros((len(units), width), bool)
    for u, (_, _, rd) in enumerate(units):
      for c, (o, b) in enumerate(rd):
        rd_o[u, c], rd_b[u, c], rd_on[u, c] = o, b, True
    inner = dataclasses.replace(ctx, applied=0)

    def unit(state, xs):
      carry, slots, read_k = state
      u, o, b, ro, rb, on = xs
      rs = (n + o) % R
      pos = k0 + u
      carry = inner.apply(carry, b[None], slots[rs, b][None], pos[None],
                          tau=(pos - read_k[rs])[None], xhat=ctx.gather(xhat_slots[rs]))
      rr = jnp.where(on, (n + ro) % R, R)  # padding: out of range, dropped
      slots = slots.at[rr, rb].set(carry.x[rb], mode="drop")
      read_k = read_k.at[rr, rb].set(pos + 1, mode="drop")
      return (carry, slots, read_k), None

    xs = (jnp.arange(len(units), dtype=jnp.int32), u_o, u_b, rd_o, rd_b, rd_on)
    (carry, slots, read_k), _ = jax.lax.scan(unit, (carry, slots, read_k), xs)
    if inner.applied != 1:
      raise AssertionError(f"a scanned update applied {inner.applied} block updates")
    ctx.applied += len(units)
    return carry._replace(rule=ProgramState(slots, read_k, n + prog.q, xhat_slots, st.hook))

  def step(self, carry, key, ctx):
    """One period: ``q`` gradients and ``q * S`` block updates, in the program's order."""
    if self._scans_updates(ctx):
      return self._step_scanned(carry, key, ctx)
    prog = self.program()
    R = prog.R
    st = carry.rule
    n, slots, read_k, xhat_slots, hstate = st.n, st.slots, st.read_k, st.xhat, st.hook
    k0 = carry.k
    table = prog.delay_table() if self.hook.changes_grad else None
    at = {}  # place in the period (updates before it, in time order) of each read and update
    for kind, o, b in prog.events:
      if kind != "G":
        at[(kind, o, b)] = sum(kd == "U" for kd, _, _ in at)
    # A read hook's state follows every update, so its gradient events keep time order;
    # per-iteration metrics need the iterates in time order.
    reorder = not (ctx.track or self.hook.changes_read)
    for kind, members in _groups(prog.events, reorder=reorder):
      if kind == "G":
        r = (n + members) % R
        xhat_loc = self._predict(hstate, slots[r], ctx)
        if xhat_slots is not None:
          xhat_slots = xhat_slots.at[r].set(xhat_loc)
        g = ctx.grad(ctx.gather(xhat_loc), sample_key(key, n + members))
        slots = slots.at[r].set(ctx.local(g))
        continue
      rs = jnp.stack([(n + o) % R for o, _ in members])
      bs = np.array([b for _, b in members])
      lbs, owned = ctx.own(bs)
      if kind == "R":
        if ctx.sharded:
          dst = jnp.where(owned, lbs, ctx.S_loc)  # other devices' blocks: dropped
          slots = slots.at[rs, dst].set(carry.x[lbs], mode="drop")
        else:
          slots = slots.at[rs, lbs].set(carry.x[lbs])
        read_k = read_k.at[rs, bs].set(k0 + np.array([at[("R",) + m] for m in members],
                                                     np.int32))
        continue
      # updates of distinct blocks, each with its microbatch's pending gradient
      g_rows = slots[rs, lbs]
      if self.hook.changes_grad:
        g_rows, hstate = self.hook.update(
            hstate, g_rows, carry.x[lbs], xhat_slots[rs, lbs], jnp.asarray(table[bs], jnp.int32),
            blocks=lbs, k=k0 + np.array([at[("U",) + m] for m in members], np.int32))
      x_before = carry.x
      pos = k0 + np.array([at[("U",) + m] for m in members], np.int32)
      carry = ctx.apply(carry, bs, g_rows, pos, tau=pos[:, None] - read_k[rs],
                        xhat=ctx.gather(xhat_slots[rs[0]]) if ctx.track else None)
      hstate = self.hook.observe(hstate, lbs, owned, carry.x[lbs] - x_before[lbs]) \
          if self.hook.observes else hstate
    return carry._replace(rule=ProgramState(slots, read_k, n + prog.q, xhat_slots, hstate))

  def read_point(self, carry, key, ctx):
    st = carry.rule
    r = st.n % self.program().R
    return ctx.gather(self._predict(st.hook, st.slots[r], ctx))


@frozen
class FixedProgram(ProgramRule):
  """A rule running a given :class:`Program` (e.g. a rule's zero-delay program)."""

  S: int
  prog: Program
  name: str = "program"
  hook: Hook = IDENTITY

  def program(self) -> Program:
    return self.prog

  def zero_delay(self) -> "FixedProgram":
    return FixedProgram(self.S, self.prog.synchronous(), self.name, self.hook)


@register_rule("sync", help="synchronous SGD: every microbatch reads x^n, all S blocks "
                            "take its gradient (what flushing schedules train as)")
@frozen
class Synchronous(ProgramRule):
  """Synchronous SGD: every microbatch reads ``x^n``, all ``S`` blocks take its gradient.

  This is what flushing schedules (GPipe, 1F1B-flush) train as, and the zero-delay limit
  of every program rule: ``x^{n+1} = x^n - gamma g(x^n; xi_n)``.
  """

  S: int
  name: str = "sync"
  hook: Hook = IDENTITY
  timing: str | None = None  # the flushing schedule it stands for (schedule:gpipe)

  def __post_init__(self):
    check_S(self.S)

  def program(self) -> Program:
    return zero_delay_program(self.S)

  def reference(self, x0, grad, gamma, K, key):
    return _sync_reference(self, x0, grad, gamma, K, key)


@register_rule("pipedream", help="steady-state PipeDream with weight stashing, one block "
                                 "per stage (an event program)")
@frozen
class PipeDreamRule(ProgramRule):
  """Steady-state PipeDream with ``S`` stages, one block per stage.

  Microbatch ``m`` reads block ``j`` at the start of ``F(m, j)`` (weight stashing keeps that
  version for its backward), gets one stochastic gradient at that stale point, and its block
  ``i`` part is applied at the end of ``B(m, i)``. The realized delays are exactly the table
  :func:`rpd.rules.rpd_rule.pipedream_table` (checked against sympy in the tests).
  """

  S: int
  name: str = "pipedream"
  hook: Hook = IDENTITY

  def __post_init__(self):
    check_S(self.S)

  def program(self) -> Program:
    return schedule_program("pipedream", self.S, 1)

  schedule_name = "pipedream"  # type: ignore[assignment]

  def reference(self, x0, grad, gamma, K, key):
    return _program_reference(self, x0, grad, gamma, K, key)


# ---------------------------------------------------------------------------------------
# NumPy references, written from the schedule's timeline (rpd.schedules' timing pass), not
# from the event programs above.


def timeline_reference(schedule: str, S: int, x0, grad, gamma: float, K: int, mit):
  """``x^K`` of a weight-stashing schedule replayed on its timeline, float64 NumPy.

  Conventions (the engine's, documented in :mod:`rpd.rules.program`): microbatch ``m``
  stashes block ``b`` at the start of ``F(m, b)``; block ``b`` is updated at the end of
  ``m``'s update action with block ``b`` of ``m``'s one gradient, taken at its stash just
  before its first update; at equal times updates come before reads, updates by block;
  the run starts just before the first update of microbatch ``m0 = 2S`` (every read before
  saw ``x^0``; gradients taken before the start are at ``x^0``). For a mitigation ``mit``:
  ``h_j`` counts block ``j``'s updates between ``m``'s read and its update of ``j`` (a
  steady-state microbatch), ``tau_row`` the updates between ``m``'s read of each block and
  this update, counted on the whole timeline.
  """
  from rpd.schedules import get_schedule
  m0 = 2 * S
  timed = get_schedule(schedule).timed(S, m0 + K // S + 3 * S, 1)
  ev = [(t, 1, b, "R", m) for (kind, m, b), t in timed.start.items() if kind == "F"]
  ev += [(t, 0, b, "U", m) for (kind, m, b), t in timed.end.items()
         if kind == timed.update_kind]
  events = [(kind, m, b) for _, _, b, kind, m in sorted(ev)]
  start = next(p for p, (kind, m, _) in enumerate(events) if kind == "U" and m == m0)
  n_upd, count, read_n, read_c, tau, horizon = 0, [0] * S, {}, {}, {}, {}
  for kind, m, b in events:
    if kind == "R":
      read_n[(m, b)], read_c[(m, b)] = n_upd, count[b]
    else:
      tau[(m, b)] = np.array([n_upd - read_n[(m, j)] for j in range(S)])
      horizon[(m, b)] = count[b] - read_c[(m, b)]
      count[b] += 1
      n_upd += 1
  h = np.array([horizon[(m0, b)] for b in range(S)])
  x0 = np.array(x0, np.float64)
  x = x0.copy()
  stash, point, g_of = {}, {}, {}
  for kind, m, b in events[:start]:
    if kind == "U" and m not in g_of:
      point[m], g_of[m] = x0.copy(), grad(x0)
  c = 0
  for kind, m, b in events[start:]:
    if c == K:
      break
    if kind == "R":
      stash.setdefault(m, x0.copy())[b] = x[b]
      continue
    if m not in g_of:
      point[m] = mit.read(stash.get(m, x0).copy(), h)
      g_of[m] = grad(point[m])
    g = mit.grad(g_of[m][b], x[b], point[m][b], tau[(m, b)], c, b)
    new = x[b] - gamma * g
    mit.observe(b, new - x[b])
    x[b] = new
    c += 1
  return x


def _program_reference(self, x0, grad, gamma, K, key):
  """NumPy reference: the schedule's timeline (:func:`timeline_reference`)."""
  x0 = np.asarray(x0)
  return timeline_reference(self.schedule_name, self.S, x0, grad, gamma, K,
                            self.hook.reference(self.S, x0.shape[1]))


def _sync_reference(self, x0, grad, gamma, K, key):
  """NumPy reference of synchronous SGD: per microbatch, read all of ``x``, one gradient,
  update blocks ``0..S-1`` in turn (update ``b`` is ``b`` updates after the read)."""
  x = np.array(x0, np.float64)
  mit = self.hook.reference(self.S, x.shape[1])
  c = 0
  for _ in range(K // self.S):
    point = mit.read(x.copy(), np.zeros(self.S, int))
    g = grad(point)
    for b in range(self.S):
      gb = mit.grad(g[b], x[b], point[b], np.full(self.S, b), c, b)
      new = x[b] - gamma * gb
      mit.observe(b, new - x[b])
      x[b] = new
      c += 1
  return x

