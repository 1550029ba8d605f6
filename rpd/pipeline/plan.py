"""The tick table: a schedule's per-stage action lists placed on a global clock.

:func:`build_plan` takes the action lists of a registered schedule (the lists the simulator
times, :mod:`rpd.schedules`), times them with unit durations and no latency
(:func:`rpd.schedules.core.time_schedule`: every start is an integer, the *tick*), and
writes, for every tick ``t`` and stage ``s``, the one action stage ``s`` runs at ``t`` (or
idle) with every buffer index it needs. Everything is static numpy: the executor scans over
the rows.

Buffers of stage ``s`` (ring buffers whose slots are allocated here, first free slot first):

* *stash*: the input activation of ``F(m, s)`` (and, for weight stashing, the weights it
  read), held from ``F(m, s)`` to ``B(m, s)``: exactly the simulator's held activations, so
  the peak number of slots in use is ``peak_activations`` of :mod:`rpd.schedules.metrics`.
* *activation inbox*: an activation sent by ``F(m, s - 1)`` at tick ``t`` arrives at the end
  of ``t`` and waits there until ``F(m, s)`` reads it.
* *gradient inbox*: the same for the activation gradient sent by ``B(m, s + 1)``.

Updates. ``async_stash`` (PipeDream): ``B(m, s)`` updates block ``s`` with microbatch ``m``'s
gradient at the weights its forward stashed; ``apply[m, s]`` may switch single updates off
(used to start in the engine's steady state, :func:`rpd.pipeline.equivalence.engine_window`).
``sync_flush`` (GPipe, 1F1B-flush): the lists of one batch of ``M`` microbatches are repeated
``batches`` times (microbatch ``m`` of batch ``n`` is ``n M + m``); gradients are accumulated
and the last backward of a batch on stage ``s`` applies their mean.

Samples. Microbatch ``m`` is slice ``m mod G`` (``G = M`` for flushing schedules, else 1) of
the problem's sample number ``m // G + sample_offset``: a batch of ``G b`` samples split into
``G`` microbatches of ``b``.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from rpd.schedules import get_schedule
from rpd.schedules.core import time_schedule
from rpd.schedules.semantics import Semantics

SUPPORTED = ("pipedream", "1f1b-flush", "gpipe")
IDLE, FWD, BWD = 0, 1, 2
# Columns of Plan.table.
COLS = ("kind", "m", "slot", "in_slot", "gin_slot", "recv_a", "recv_g", "apply", "n", "j")


@dataclasses.dataclass(frozen=True, eq=False)
class Plan:
  """A schedule on the tick clock (see the module docstring).

  Attributes:
    schedule: registry name.
    semantics: the schedule's :class:`~rpd.schedules.semantics.Semantics`.
    S: stages (= devices).
    M: microbatches per batch (flushing schedules) or in all (PipeDream).
    batches: batches (flushes); 1 for PipeDream.
    G: microbatches per sample of the problem (``M`` for flushing schedules, else 1).
    table: ``(T, S, len(COLS))`` int32, the row of every tick and stage (``-1``: unused).
    n_stash, n_inbox, n_ginbox: slots of the three ring buffers (max over stages).
    peak_stash: peak stash slots in use, per stage (static count).
    microbatches: microbatches run in all.
  """

  schedule: str
  semantics: Semantics
  S: int
  M: int
  batches: int
  G: int
  table: np.ndarray
  n_stash: int
  n_inbox: int
  n_ginbox: int
  peak_stash: tuple
  microbatches: int

  @property
  def T(self) -> int:
    """Ticks."""
    return int(self.table.shape[0])

  def column(self, name: str) -> np.ndarray:
    """``(T, S)`` column ``name`` of the table."""
    return self.table[:, :, COLS.index(name)]

  def padded(self, ticks: int) -> np.ndarray:
    """The table padded with idle ticks to ``ticks`` rows."""
    pad = np.full((ticks - self.T,) + self.table.shape[1:], -1, np.int32)
    pad[:, :, COLS.index("kind")] = IDLE
    return np.concatenate([self.table, pad])


class _Slots:
  """First-free-slot allocator; remembers the peak."""

  def __init__(self):
    self.used: dict = {}
    self.peak = 0

  def get(self, key) -> int:
    free = set(range(len(self.used) + 1)) - set(self.used.values())
    slot = min(free)
    self.used[key] = slot
    self.peak = max(self.peak, len(self.used))
    return slot

  def put(self, key) -> int:
    return self.used.pop(key)


def build_plan(schedule: str, S: int, M: int, *, batches: int = 1, apply=None,
               sample_offset: int = 0) -> Plan:
  """The tick table of ``schedule`` on ``S`` stages.

  Args:
    schedule: ``"pipedream"``, ``"1f1b-flush"`` or ``"gpipe"`` (:data:`SUPPORTED`).
    S: stages (one block per stage and device).
    M: microbatches (PipeDream: in all; flushing schedules: per batch).
    batches: batches of ``M`` microbatches (flushing schedules only).
    apply: optional ``(M, S)`` bool array (PipeDream only): whether ``B(m, s)`` applies its
      update (default: every one).
    sample_offset: added to every sample number (see the module docstring).

  Raises:
    ValueError: unsupported schedule or bad sizes (the message names the bad value).
  """
  if schedule not in SUPPORTED:
    raise ValueError(f"schedule {schedule!r} is not supported by the executor; "
                     f"supported: {', '.join(SUPPORTED)}")
  if S < 1 or M < 1 or batches < 1:
    raise ValueError(f"need S, M, batches >= 1, got S={S}, M={M}, batches={batches}")
  sched = get_schedule(schedule)
  sync = sched.semantics.synchronous
  if not sync and batches != 1:
    raise ValueError(f"{schedule} runs one stream of microbatches: use batches=1, M=total")
  one = sched.actions(S, M)
  G = M if sync else 1
  acts = [[type(a)(a.stage, a.kind, a.microbatch + n * M) for n in range(batches)
           for a in one[s]] for s in range(S)]
  Mtot = M * batches
  if apply is not None and (sync or np.shape(apply) != (Mtot, S)):
    raise ValueError(f"apply must be an ({Mtot}, {S}) bool array (PipeDream only)")
  apply = np.ones((Mtot, S), bool) if apply is None else np.asarray(apply, bool)
  timed = time_schedule(acts)
  T = int(round(max(timed.end.values())))
  table = np.full((T, S, len(COLS)), -1, np.int32)
  table[:, :, COLS.index("kind")] = IDLE
  c = {name: i for i, name in enumerate(COLS)}
  last_b = {}  # (batch, stage) -> microbatch of its last backward (flush update)
  for s in range(S):
    for a in acts[s]:
      if a.kind == "B":
        last_b[(a.microbatch // M, s)] = a.microbatch
  # Walk the ticks in order; at each tick actions run, then messages arrive.
  stash = [_Slots() for _ in range(S)]
  inbox = [_Slots() for _ in range(S)]
  ginbox = [_Slots() for _ in range(S)]
  by_tick: dict = {}
  for s in range(S):
    for a in acts[s]:
      t = timed.start[(a.kind, a.microbatch, s)]
      if t != int(t):
        raise AssertionError("unit durations give integer ticks")
      by_tick.setdefault(int(t), []).append((s, a))
  for t in range(T):
    arrivals = []
    for s, a in sorted(by_tick.get(t, []), key=lambda e: e[0]):
      m = a.microbatch
      row = table[t, s]
      row[c["m"]] = m
      row[c["n"]] = m // G + sample_offset
      row[c["j"]] = m % G
      if a.kind == "F":
        row[c["kind"]] = FWD
        row[c["slot"]] = stash[s].get(m)
        if s > 0:
          row[c["in_slot"]] = inbox[s].put(m)
        if s < S - 1:
          arrivals.append(("a", s + 1, m))
      else:
        row[c["kind"]] = BWD
        row[c["slot"]] = stash[s].put(m)
        if s < S - 1:
          row[c["gin_slot"]] = ginbox[s].put(m)
        if s > 0:
          arrivals.append(("g", s - 1, m))
        if sync:
          row[c["apply"]] = int(last_b[(m // M, s)] == m)
        else:
          row[c["apply"]] = int(apply[m, s])
    for what, s, m in arrivals:
      if what == "a":
        table[t, s, c["recv_a"]] = inbox[s].get(m)
      else:
        table[t, s, c["recv_g"]] = ginbox[s].get(m)
  if any(x.used for x in stash + inbox + ginbox):
    raise AssertionError("every stashed or received activation is consumed")
  return Plan(schedule=schedule, semantics=sched.semantics, S=S, M=M, batches=batches, G=G,
              table=table, n_stash=max(x.peak for x in stash),
              n_inbox=max([1] + [x.peak for x in inbox]),
              n_ginbox=max([1] + [x.peak for x in ginbox]),
              peak_stash=tuple(x.peak for x in stash), microbatches=Mtot)
