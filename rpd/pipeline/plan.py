"""The tick table: a schedule's per-device action lists compiled onto a global clock.

:func:`build_plan` takes the action lists of a registered schedule (the very lists the
simulator times, ``get_schedule(name).actions(P, M, V)``), times them with unit durations and
no latency (:func:`rpd.schedules.core.time_schedule`: every start is an integer, the *tick*)
and writes, for every tick ``t`` and device ``p``, the one action ``p`` runs at ``t`` (or
idle) with every buffer index and message route it needs. The compiler is generic over
actions ``(device p, kind F | B | W, microbatch m, chunk c, block b)``:

* *placement*: device ``p`` holds ``L`` local blocks, local index = :attr:`Action.chunk`
  (``V`` chunks of interleaved and V-shaped schedules; Chimera's two replicas, chunk =
  direction); the model block of an action is :func:`rpd.schedules.core.block_of`.
* *routes*: the output of ``F(m, b)`` goes to the device that runs ``F(m, b + 1)``, the input
  gradient of ``B(m, b)`` to the device that runs ``B(m, b - 1)``: to the next device
  (``p + 1 mod P``), the previous one (``p - 1 mod P``) or the device itself (the turn of a
  V). The permutation pairs actually used are recorded (:attr:`Plan.pairs_next`,
  :attr:`Plan.pairs_prev`), and per tick whether any device sends, so that ticks without a
  message send nothing.
* *buffers* of device ``p`` (slots allocated first free first): the *stash* holds the input
  activation of ``F(m, b)`` (and, with weight stashing, the weights it read) from ``F(m, b)``
  to the action that ends its backward (``B``, or ``W`` when the backward is split): exactly
  the simulator's held activations (:func:`rpd.schedules.metrics.peak_activations`), so the
  peak number of slots in use is the simulator's peak; the *activation inbox* holds an
  arrived activation until its forward reads it; the *gradient inbox* an arrived gradient
  until the backward (split: until ``W``) no longer needs it.
* *updates*, by semantics (:mod:`rpd.schedules.semantics`, asked, never compared by name):
  synchronous: every weight gradient of a batch is accumulated, one update per block after
  the batch (the flush; Chimera sums its two replicas' gradients first); asynchronous:
  the action that produces ``m``'s weight gradient updates its block at once (``upd``);
  double-buffered (2BW): batch ``t`` reads version ``t - 1`` of each block (slot
  ``ver = (t - 1) mod 2``), its gradients are accumulated and the last backward of the batch
  writes version ``t + 1`` into that same slot.

Batches and samples. A synchronous plan times one batch of ``M`` microbatches and repeats its
table ``batches`` times, the last tick of each copy flushing (``flush``); the other
schedules time one stream of ``M * batches`` microbatches. Microbatch ``m`` is slice
``m mod M`` of the problem's sample ``m // M`` (a batch of ``M b`` samples split into ``M``
microbatches of ``b``), for every schedule.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rpd.schedules import SCHEDULES, get_schedule
from rpd.schedules.core import ScheduleNotApplicable, block_of, time_schedule

IDLE, FWD, BWD, BIN, WGT = 0, 1, 2, 3, 4  # BIN: input-gradient-only backward (split B)
NONE, NEXT, PREV, SELF = 0, 1, 2, 3  # message routes
ACT, GRAD = 0, 1  # receive buffers
COLS = ("kind", "c", "b", "m", "n", "j", "slot", "in_slot", "gin_slot", "send", "upd", "ver",
        "rx_prev_buf", "rx_prev_slot", "rx_next_buf", "rx_next_slot", "rx_self_buf",
        "rx_self_slot", "any_next", "any_prev", "loss", "flush")
C = {name: i for i, name in enumerate(COLS)}

#: schedules the executor refuses, with the reason (none: every registered one runs).
REFUSED: dict = {}
SUPPORTED = tuple(n for n in SCHEDULES if n not in REFUSED)


def default_V(name: str) -> int:
  """Chunks per device a schedule runs with by default (2 for chunked schedules, else 1)."""
  return 2 if get_schedule(name).chunked else 1


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
  """A schedule on the tick clock (see the module docstring).

  Attributes:
    schedule: registry name.
    semantics: the schedule's :class:`~rpd.schedules.semantics.Semantics`.
    P: devices. V: chunks per device the schedule was asked for. L: local blocks per device.
    S: model blocks (the problem's stages).
    M: microbatches per batch (one sample of the problem, ``M`` slices).
    batches: batches (flushes of a synchronous schedule).
    G: microbatches per sample of the problem (``M``).
    table: ``(T, P, len(COLS))`` int32 (``-1``: unused), every batch.
    local_blocks: ``(P, L)`` model block of each local block (``-1``: none).
    n_stash, n_inbox, n_ginbox: slots of the three buffers (max over devices).
    peak_stash: peak stash slots in use per device (static count).
    pairs_next, pairs_prev: ``(src, dst)`` pairs of the two routes that carry a message.
    replicas: 2 for Chimera (gradients of the two replicas of a block are summed).
    microbatches: microbatches run in all.
  """

  schedule: str
  semantics: object
  P: int
  V: int
  L: int
  S: int
  M: int
  batches: int
  G: int
  table: np.ndarray
  local_blocks: np.ndarray
  n_stash: int
  n_inbox: int
  n_ginbox: int
  peak_stash: tuple
  pairs_next: tuple
  pairs_prev: tuple
  replicas: int
  microbatches: int

  @property
  def T(self) -> int:
    """Ticks of one table (one batch of a synchronous schedule)."""
    return int(self.table.shape[0])


  def column(self, name: str) -> np.ndarray:
    """``(T, P)`` column ``name`` of the table."""
    return self.table[:, :, C[name]]

  def padded(self, T: int | None = None, n_stash: int | None = None,
             n_inbox: int | None = None, n_ginbox: int | None = None,
             L: int | None = None, pairs_next=(), pairs_prev=()) -> "Plan":
    """The same plan with idle ticks appended and larger buffers (to share one compiled
    program between plans; the result is unchanged)."""
    T = T or self.T
    if T < self.T:
      raise ValueError(f"cannot pad {self.T} ticks to {T}")
    pad = np.full((T - self.T,) + self.table.shape[1:], -1, np.int32)
    pad[:, :, C["kind"]] = IDLE
    pad[:, :, [C["any_next"], C["any_prev"], C["loss"], C["flush"]]] = 0
    lb = np.full((self.P, L or self.L), -1, np.int32)
    lb[:, :self.L] = self.local_blocks
    return dataclasses.replace(
        self, L=lb.shape[1], local_blocks=lb,
        pairs_next=tuple(sorted(set(self.pairs_next) | set(pairs_next))),
        pairs_prev=tuple(sorted(set(self.pairs_prev) | set(pairs_prev))), table=np.concatenate([self.table, pad]),
        n_stash=max(self.n_stash, n_stash or 0), n_inbox=max(self.n_inbox, n_inbox or 0),
        n_ginbox=max(self.n_ginbox, n_ginbox or 0))


def pad_together(plans) -> list:
  """Plans padded to common ticks and buffer sizes (one compiled program serves them all)."""
  T = max(p.T for p in plans)
  kw = {k: max(getattr(p, k) for p in plans) for k in ("n_stash", "n_inbox", "n_ginbox", "L")}
  kw["pairs_next"] = tuple(set().union(*[p.pairs_next for p in plans]))
  kw["pairs_prev"] = tuple(set().union(*[p.pairs_prev for p in plans]))
  return [p.padded(T, **kw) for p in plans]


class _Slots:
  """First-free-slot allocator; remembers the peak."""

  def __init__(self):
    self.used: dict = {}
    self.peak = 0

  def get(self, key) -> int:
    if key in self.used:
      raise AssertionError(f"slot key {key} allocated twice")
    free = set(range(len(self.used) + 1)) - set(self.used.values())
    slot = min(free)
    self.used[key] = slot
    self.peak = max(self.peak, len(self.used))
    return slot

  def put(self, key) -> int:
    return self.used.pop(key)


def build_plan(schedule: str, P: int, M: int, *, V: int | None = None,
               batches: int = 1) -> Plan:
  """The tick table of ``schedule`` on ``P`` devices for ``batches`` batches of ``M``.

  Args:
    schedule: a registered schedule (:data:`SUPPORTED`).
    P: devices.
    M: microbatches per batch (per flush for synchronous schedules; for the asynchronous
      ones a batch is only the unit of sampling: the stream has ``M * batches``).
    V: chunks per device (default :func:`default_V`).
    batches: batches.

  Raises:
    ValueError: unknown or refused schedule, a schedule that does not apply to
      ``(P, M, V)``, or bad sizes (the message names the bad value and says why).
  """
  if schedule not in SCHEDULES:
    raise ValueError(f"unknown schedule {schedule!r}; known: {', '.join(sorted(SCHEDULES))}")
  if schedule in REFUSED:
    raise ValueError(f"schedule {schedule!r} is not executed: {REFUSED[schedule]}")
  if P < 1 or M < 1 or batches < 1:
    raise ValueError(f"need P, M, batches >= 1, got P={P}, M={M}, batches={batches}")
  sched = get_schedule(schedule)
  sem = sched.semantics
  V = default_V(schedule) if V is None else V
  n_stream = M if sem.synchronous else M * batches  # microbatches of one timed list
  try:
    sched.check(P, n_stream, V)
    acts = sched.actions(P, n_stream, V)
  except ScheduleNotApplicable as e:
    raise ValueError(f"{schedule} at P={P}, M={M}, V={V}: {e}") from None
  one = _compile(schedule, sem, sched.replicas, acts, P, V, M, batches if not sem.synchronous
                 else 1)
  if sem.synchronous:  # a flush after every batch: the batch's table, repeated
    tabs = []
    for n in range(batches):
      t = one["table"].copy()
      used = t[:, :, C["m"]] >= 0
      t[:, :, C["m"]][used] += n * M
      t[:, :, C["n"]][used] = n
      t[-1, :, C["flush"]] = 1
      tabs.append(t)
    one["table"] = np.concatenate(tabs)
  return Plan(schedule=schedule, semantics=sem, P=P, V=V, M=M, batches=batches, G=M,
              replicas=sched.replicas, microbatches=M * batches, **one)


def _compile(schedule, sem, replicas, acts, P, V, M, batches) -> dict:
  """The table and buffers of one timed list of actions (see the module docstring)."""
  where: dict = {}
  local: dict = {}
  for p in range(P):
    for a in acts[p]:
      b = block_of(a, P)
      where[(a.kind, a.microbatch, b)] = (p, a.chunk)
      prev = local.setdefault((p, a.chunk), b)
      if prev != b:
        raise ValueError(f"{schedule}: chunk {a.chunk} of device {p} runs blocks {prev} and {b}")
  S = 1 + max(b for (_, _, b) in where)
  L = 1 + max(c for (_, c) in local)
  local_blocks = np.full((P, L), -1, np.int32)
  for (p, c), b in local.items():
    local_blocks[p, c] = b
  split = any(k == "W" for (k, _, _) in where)
  if replicas == 2:
    # Chimera: chunk 0 of device p and chunk 1 of device P - 1 - p are the same block.
    for p in range(P):
      if local_blocks[p, 0] != local_blocks[P - 1 - p, 1]:
        raise AssertionError("chimera replicas: chunk 0 of p is chunk 1 of P - 1 - p")
  elif len(set(local.values())) != len(local):
    raise ValueError(f"{schedule}: a block is held by two devices (not a pipeline placement)")
  timed = time_schedule(acts, V=V)
  T = int(round(max(timed.end.values())))
  table = np.full((T, P, len(COLS)), -1, np.int32)
  table[:, :, C["kind"]] = IDLE
  table[:, :, [C["any_next"], C["any_prev"], C["loss"], C["flush"]]] = 0
  upd_kind = "W" if split else "B"
  upd_tick = {}  # 2BW: the update of block b by batch t lands at its last backward
  if sem.double_buffered:
    for t_b in range(batches):
      for b in range(S):
        upd_tick[(t_b, b)] = timed.start[(upd_kind, t_b * M + M - 1, b)]
  by_tick: dict = {}
  for p in range(P):
    for a in acts[p]:
      t = timed.start[(a.kind, a.microbatch, block_of(a, P))]
      if t != int(t):
        raise AssertionError("unit durations give integer ticks")
      by_tick.setdefault(int(t), []).append((p, a))
  stash = [_Slots() for _ in range(P)]
  inbox = [_Slots() for _ in range(P)]
  ginbox = [_Slots() for _ in range(P)]
  pairs = {NEXT: set(), PREV: set()}

  def route(p, dst):
    d = (dst - p) % P
    if d == 0:
      return SELF
    if d == 1:
      return NEXT
    if d == P - 1:
      return PREV
    raise ValueError(f"{schedule}: a message from device {p} to {dst} skips a device")

  for t in range(T):
    arrivals = []
    for p, a in sorted(by_tick.get(t, []), key=lambda e: e[0]):
      m, b = a.microbatch, block_of(a, P)
      row = table[t, p]
      row[C["c"]], row[C["b"]], row[C["m"]] = a.chunk, b, m
      row[C["n"]], row[C["j"]] = m // M, m % M
      if sem.double_buffered:
        t_b = m // M
        row[C["ver"]] = (t_b - 1) % 2
        if a.kind == "F" and t_b >= 2 and upd_tick[(t_b - 2, b)] + 1 > t:
          raise ValueError(
              f"{schedule} at P={P}, M={M}: version W^(t-1) of block {b} is not ready when "
              f"batch {t_b} starts (double buffering needs M of at least about P)")
      if a.kind == "F":
        row[C["kind"]] = FWD
        row[C["slot"]] = stash[p].get((m, b))
        row[C["loss"]] = int(b == S - 1)
        if b > 0:
          row[C["in_slot"]] = inbox[p].put((m, b))
        if b < S - 1:
          dst, _ = where[("F", m, b + 1)]
          row[C["send"]] = route(p, dst)
          arrivals.append((route(p, dst), p, dst, ACT, (m, b + 1)))
        else:
          row[C["send"]] = NONE
      elif a.kind == "B":
        row[C["kind"]] = BIN if split else BWD
        row[C["slot"]] = stash[p].used[(m, b)] if split else stash[p].put((m, b))
        if b < S - 1:
          key = (m, b)
          row[C["gin_slot"]] = ginbox[p].used[key] if split else ginbox[p].put(key)
        if b > 0:
          dst, _ = where[("B", m, b - 1)]
          row[C["send"]] = route(p, dst)
          arrivals.append((route(p, dst), p, dst, GRAD, (m, b - 1)))
        else:
          row[C["send"]] = NONE
      else:  # W
        row[C["kind"]] = WGT
        row[C["slot"]] = stash[p].put((m, b))
        if b < S - 1:
          row[C["gin_slot"]] = ginbox[p].put((m, b))
        row[C["send"]] = NONE
      if a.kind == upd_kind:
        if sem.synchronous:
          row[C["upd"]] = 0  # accumulated; the flush updates
        elif sem.double_buffered:
          row[C["upd"]] = int(m % M == M - 1)  # the batch's last backward
        else:
          row[C["upd"]] = 1
    for r, src, dst, buf, key in arrivals:
      slot = (inbox if buf == ACT else ginbox)[dst].get(key)
      name = {NEXT: "rx_prev", PREV: "rx_next", SELF: "rx_self"}[r]
      if table[t, dst, C[name + "_buf"]] >= 0:
        raise AssertionError("one message per route and tick")
      table[t, dst, C[name + "_buf"]] = buf
      table[t, dst, C[name + "_slot"]] = slot
      if r in pairs:
        pairs[r].add((src, dst))
        table[t, :, C["any_next" if r == NEXT else "any_prev"]] = 1
  if any(x.used for x in stash + inbox + ginbox):
    raise AssertionError("every stashed or received activation is consumed")
  return dict(L=L, S=S, table=table, local_blocks=local_blocks,
              n_stash=max(x.peak for x in stash), n_inbox=max([1] + [x.peak for x in inbox]),
              n_ginbox=max([1] + [x.peak for x in ginbox]),
              peak_stash=tuple(x.peak for x in stash),
              pairs_next=tuple(sorted(pairs[NEXT])), pairs_prev=tuple(sorted(pairs[PREV])))
