"""Event programs: a steady-state pipeline schedule compiled for the stale block-SGD engine.

In steady state an asynchronous, weight-stashing schedule repeats a fixed pattern of events
every ``q`` microbatches. Relative to the microbatch ``n`` whose gradient starts a period,
each event names a microbatch offset ``o`` and a block ``b``:

* ``R(o, b)`` -- microbatch ``n + o`` reads block ``b`` (the start of ``F(n + o, b)``); the
  engine copies the current ``x_b`` into that microbatch's slot (weight stashing).
* ``G(o)``    -- microbatch ``n + o`` has read every block; the engine draws its sample and
  replaces the slot's stale point ``x_hat(n + o)`` by the stochastic gradient there. It is
  placed just before the microbatch's first update, so a period starts with ``G(0)``.
* ``U(o, b)`` -- block ``b`` is updated with block ``b`` of microbatch ``n + o``'s gradient
  (the end of ``B(n + o, b)``, or ``W`` for split backwards): one iteration.

Events are in the order of :mod:`rpd.schedules.core` (time; at equal times updates before
reads, updates by block index). A microbatch occupies slot ``(n + o) mod R`` from its first
read to its last update; ``R`` is the largest span of microbatches alive at once, so the
buffers hold ``R * S * D`` numbers (PipeDream: ``R = S``, i.e. ``S * d``).

The run starts in steady state: microbatches already in flight at iteration 0 have read
``x^0`` and, if their gradient event has passed, hold the gradient at ``x^0`` (the
convention "reads before the first iteration see ``x^0``"). ``init_reads`` gives those
reads' virtual iteration numbers so that the realized delays of the very first updates
already equal the steady-state table.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from rpd.schedules.core import without_gc


@dataclasses.dataclass(frozen=True)
class Program:
  """A periodic event program (see the module docstring).

  Attributes:
    S: number of blocks.
    q: microbatches (gradients) per period; a period has ``q * S`` updates.
    R: number of microbatch slots.
    events: ``(kind, o, b)`` per event of one period, ``kind`` in ``"G" "R" "U"``
      (``b = -1`` for ``G``).
    init_pending: offsets ``o < 0`` whose gradient event precedes iteration 0.
    init_reads: ``(o, b, k)``: microbatch ``o`` read block ``b`` before iteration 0, at the
      virtual iteration ``k <= 0``.
    source: a description of where the program comes from.
  """

  S: int
  q: int
  R: int
  events: tuple
  init_pending: tuple
  init_reads: tuple
  source: str = ""

  @property
  def updates_per_period(self) -> int:
    return self.q * self.S

  @property
  def tau_max(self) -> int:
    """Largest delay realized in steady state (from a symbolic replay of the program)."""
    return int(self.delay_table().max(initial=0))

  @functools.lru_cache(maxsize=None)
  def _delay_table(self) -> np.ndarray:
    return self._replay_table()

  def delay_table(self) -> np.ndarray:
    """The steady-state ``S x S`` delay table (cached; see :meth:`_replay_table`)."""
    return self._delay_table().copy()

  def _replay_table(self) -> np.ndarray:
    """The steady-state ``S x S`` delay table realized by the program.

    Replays two periods symbolically: ``tau[i][j] = k(U(m, i)) - k(R(m, j))`` where ``k(.)``
    counts updates before the event. Raises ``ValueError`` if two microbatches disagree.
    """
    tables: dict = {}
    rows: dict = {}
    for m, b, k, read_k, _, _ in _replay(self):
      row = np.array([k - read_k[(m, j)] for j in range(self.S)])
      tables.setdefault(m, np.zeros((self.S, self.S), np.int64))[b] = row
      rows[m] = rows.get(m, 0) + 1
    full = [t for m, t in tables.items() if rows[m] == self.S]
    for t in full[1:]:
      if not np.array_equal(t, full[0]):
        raise ValueError("program is not periodic: microbatches realize different tables")
    return full[0]

  @functools.lru_cache(maxsize=None)
  def horizon(self) -> tuple[int, ...]:
    """``h_j``: updates of block ``j`` between a microbatch's read of ``j`` and its own
    update of ``j`` (the version gap a weight predictor extrapolates over; PipeDream:
    ``h_j = S - 1 - j``, 0-based). From the same symbolic replay as :meth:`delay_table`."""
    h: dict = {}
    for m, b, _, _, read_c, count in _replay(self):
      if (m, b) in read_c:
        h.setdefault(b, set()).add(count[b] - read_c[(m, b)])
    if any(len(v) != 1 for v in h.values()) or len(h) != self.S:
      raise ValueError("program is not periodic: microbatches realize different horizons")
    return tuple(int(h[b].pop()) for b in range(self.S))

  def synchronous(self) -> "Program":
    """The same period made synchronous: microbatch by microbatch (in the order of their
    gradient events) read every block, take the gradient, apply its updates in this
    program's order. Plain SGD on ``q`` samples per period, running this program's
    microbatch offsets and block update order through the program path."""
    order = [o for kind, o, _ in self.events if kind == "G"]
    if order != list(range(self.q)):
      raise ValueError(f"gradient events of the period are {order}, expected 0..{self.q - 1}")
    # a microbatch's updates span periods: those at offset o - p q come p periods later
    ups = {o: [b for _, _, b in sorted((-o2, pos, b) for pos, (kind, o2, b)
                                       in enumerate(self.events)
                                       if kind == "U" and (o2 - o) % self.q == 0)]
           for o in order}
    events = []
    for o in order:
      events.append(("G", o, -1))
      events.extend(("U", o, b) for b in ups[o])
      events.extend(("R", o + 1, b) for b in range(self.S))
    init_reads = tuple((0, b, 0) for b in range(self.S))
    return Program(S=self.S, q=self.q, R=1, events=tuple(events), init_pending=(),
                   init_reads=init_reads, source=f"{self.source} made synchronous")


def _replay(prog: "Program"):
  """Replay ``R + 3`` periods symbolically: per fully-seen microbatch, per updated block
  ``i``, the iteration of its update, and per read block ``j`` the iteration and the count
  of block ``j``'s own updates at its read. Yields ``(m, i, k_U, reads, counts_at_read,
  counts_now)``."""
  k = 0
  read_k: dict = {r[:2]: r[2] for r in prog.init_reads}
  read_c: dict = {}
  count = [0] * prog.S
  for period in range(prog.R + 3):
    for kind, o, b in prog.events:
      m = period * prog.q + o
      if kind == "R":
        read_k[(m, b)] = k
        read_c[(m, b)] = count[b]
      elif kind == "U":
        yield m, b, k, read_k, read_c, count
        count[b] += 1
        k += 1


def zero_delay_program(S: int) -> Program:
  """Synchronous SGD as a program: read every block, one gradient, update every block.

  ``x^{n+1} = x^n - gamma * g(x^n; xi_n)`` per period (``S`` block updates of one gradient).
  """
  events = (("G", 0, -1),) + tuple(("U", 0, b) for b in range(S)) + tuple(
      ("R", 1, b) for b in range(S))
  init_reads = tuple((0, b, 0) for b in range(S))
  return Program(S=S, q=1, R=1, events=events, init_pending=(), init_reads=init_reads,
                 source="synchronous SGD")


@without_gc
def compile_timed(timed, source: str = "", max_q: int | None = None) -> Program:
  """Compile a timed, weight-stashing schedule into a steady-state :class:`Program`.

  Args:
    timed: a :class:`rpd.schedules.core.TimedSchedule` with enough microbatches that its
      middle is in steady state.
    source: description stored in the program.
    max_q: largest period (in microbatches) to try; default ``S``.

  Returns:
    the program.

  Raises:
    ValueError: if a microbatch reads a block after its first update, or no period is found.
  """
  S, M = timed.S, timed.M
  uk = timed.update_kind
  ev = []  # (time, order, block, kind, m): updates (order 0) before reads (order 1)
  for m in range(M):
    for b in range(S):
      ev.append((timed.end[(uk, m, b)], 0, b, "U", m))
      ev.append((timed.start[("F", m, b)], 1, b, "R", m))
  ev.sort()
  first_update: dict = {}
  last_read: dict = {}
  for pos, (_, _, b, kind, m) in enumerate(ev):
    if kind == "U":
      first_update.setdefault(m, pos)
    else:
      last_read[m] = pos
  for m in range(M):
    if last_read[m] > first_update[m]:
      raise ValueError(f"microbatch {m} reads a block after its first update; "
                       "cannot compile to one gradient per microbatch")
  # Insert G(m) right before the first update of m.
  seq = []
  for pos, (_, _, b, kind, m) in enumerate(ev):
    if first_update.get(m) == pos:
      seq.append(("G", m, -1))
    seq.append((kind, m, b))
  g_pos = {m: p for p, (kind, m, _) in enumerate(seq) if kind == "G"}
  m0 = M // 2
  max_q = max_q or S
  for q in range(1, max_q + 1):
    if m0 + 3 * q >= M:
      break
    a = [(k, m - m0, b) for k, m, b in seq[g_pos[m0]:g_pos[m0 + q]]]
    b_ = [(k, m - m0 - q, b) for k, m, b in seq[g_pos[m0 + q]:g_pos[m0 + 2 * q]]]
    c = [(k, m - m0 - 2 * q, b) for k, m, b in seq[g_pos[m0 + 2 * q]:g_pos[m0 + 3 * q]]]
    if a == b_ == c and sum(k == "U" for k, _, _ in a) == q * S:
      events = tuple(a)
      break
  else:
    raise ValueError("no steady-state period found; use more microbatches")
  # Microbatches alive at the start of the period, their reads, and pending gradients.
  start = g_pos[m0]
  updates_before = np.cumsum([0] + [k == "U" for k, _, _ in seq])  # updates before position
  c0 = int(updates_before[start])
  first_read = {}
  last_update = {}
  for p, (kind, m, b) in enumerate(seq):
    if kind == "R":
      first_read.setdefault(m, p)
    if kind == "U":
      last_update[m] = p
  alive = [m for m in range(M) if first_read[m] < start <= last_update[m]]
  init_pending = tuple(sorted(m - m0 for m in alive if g_pos[m] < start))
  init_reads = tuple((m - m0, b, int(updates_before[p]) - c0)
                     for p, (kind, m, b) in enumerate(seq[:start]) if kind == "R" and m in alive)
  # Slots: the largest span of simultaneously alive microbatches over two periods.
  end = g_pos[m0 + 2 * q]
  R = 1
  live_lo, live_hi = first_read, last_update
  for p in range(start, end):
    live = [m for m in range(max(0, m0 - 4 * S), min(M, m0 + 4 * S))
            if live_lo[m] <= p <= live_hi[m]]
    R = max(R, max(live) - min(live) + 1)
  return Program(S=S, q=q, R=R, events=events, init_pending=init_pending,
                 init_reads=init_reads, source=source)


@functools.lru_cache(maxsize=64)
def schedule_program(name: str, P: int, V: int = 1) -> Program:
  """The steady-state program of the registered schedule ``name`` with ``P`` devices."""
  from rpd.schedules import get_schedule
  sched = get_schedule(name)
  timed = sched.timed(P, sched.steady_state_microbatches(P, V), V)
  return compile_timed(timed, source=f"{name} (P={P}, V={V})")
