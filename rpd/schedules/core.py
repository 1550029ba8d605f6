"""Schedule core: actions, the timing pass and the staleness pass.

A pipeline schedule is, per device, an ordered list of :class:`Action` s. This module turns
such lists into a *timed* schedule (start and end of every action) and then, given the
schedule's update semantics, into the *delay table* ``tau`` that the stale block-SGD engine
consumes.

Conventions (the one place they are stated; everything else in rpd cites this docstring)
--------------------------------------------------------------------------------------
* Indices are 0-based in code: device ``p`` in ``0..P-1``, chunk ``c`` in ``0..V-1``,
  microbatch ``m`` in ``0..M-1``. A *block* (= virtual stage) is ``b = c * P + p``; with one
  chunk per device, block = stage = device. There are ``S = P * V`` blocks. A schedule with
  another placement names the block of each action explicitly (:attr:`Action.block`): the
  V-shaped schedules put chunk 1 of device ``p`` on block ``2P - 1 - p``; Chimera's upward
  pipeline runs model block ``b`` on device ``P - 1 - b``. ``S`` is then the number of
  distinct blocks named (``2P`` for V shapes, ``P`` for Chimera's two replicas). (The issue text
  and the paper count stages from 1: stage ``s`` there is block ``s - 1`` here.)
* Dependencies: ``F(m, b)`` starts after ``F(m, b-1)`` ends; ``B(m, b)`` starts after
  ``F(m, b)`` and ``B(m, b+1)`` end; ``W(m, b)`` (weight gradient, split-backward schedules)
  after ``B(m, b)``. An edge that crosses devices adds the point-to-point ``latency``.
* A device runs one action at a time, in its list order, each as early as possible
  (list scheduling). Every action occupies its half-open time interval ``[start, end)``.
* A forward ``F(m, b)`` *reads* the weights of block ``b`` at its start; with weight
  stashing the backward uses that same stashed version.
* The update of block ``b`` by microbatch ``m`` is applied at the *end* of the action that
  produces its weight gradient: ``B(m, b)``, or ``W(m, b)`` when the schedule splits the
  backward.
* Block updates are counted in time order; updates ending at the same time are ordered by
  block index. An update that ends at time ``t`` is visible to a read that starts at ``t``
  (an action that ends at ``t`` is complete before one that starts at ``t``).
* ``tau[i][j]`` = the number of block updates (of any block) applied after the read of block
  ``j`` by microbatch ``m`` and before the update of block ``i`` by microbatch ``m``. Rows are
  the updated block, columns the read block. In the language of stale block-SGD: at the
  iteration ``k`` that updates block ``i`` with microbatch ``m``'s gradient, block ``j`` of the
  stale point is ``x_j^{k - tau[i][j]}``.
* Steady state: microbatches far from the start and the end of the run. The staleness pass
  computes the table of every microbatch of a central window and *checks* that they agree.
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import gc
from typing import Mapping, Sequence

import numpy as np

from rpd.schedules.semantics import ALL, ASYNC_STASH, Semantics

KINDS = ("F", "B", "W")
DEFAULT_DURATIONS = {"F": 1.0, "B": 1.0, "W": 1.0}
#: every update semantics (objects; see :mod:`rpd.schedules.semantics`).
SEMANTICS = tuple(ALL.values())


@dataclasses.dataclass(frozen=True, order=True)
class Action:
  """One unit of work on one device.

  Attributes:
    stage: device index ``p`` (0-based) that runs the action.
    kind: ``"F"`` forward, ``"B"`` backward (input gradient, and weight gradient unless the
      schedule splits it off), ``"W"`` weight gradient.
    microbatch: microbatch index ``m`` (0-based).
    chunk: model chunk ``c`` held by this device (0 unless the schedule is interleaved).
    block: the block (virtual stage) the action runs, or ``-1`` (default) for the
      interleaved placement ``chunk * P + stage``.
  """

  stage: int
  kind: str
  microbatch: int
  chunk: int = 0
  block: int = -1


@dataclasses.dataclass(frozen=True)
class TimedSchedule:
  """A schedule after the timing pass.

  Attributes:
    P: number of devices.
    V: chunks per device.
    M: number of microbatches.
    actions: per device, the ordered tuple of actions.
    start: maps ``(kind, m, block)`` to its start time.
    end: maps ``(kind, m, block)`` to its end time.
    update_kind: ``"B"`` or ``"W"``: the action whose end applies a block update.
    n_blocks: number of blocks (default ``0`` = ``P * V``).
  """

  P: int
  V: int
  M: int
  actions: tuple[tuple[Action, ...], ...]
  start: Mapping[tuple[str, int, int], float]
  end: Mapping[tuple[str, int, int], float]
  update_kind: str
  n_blocks: int = 0

  @property
  def S(self) -> int:
    """Number of blocks: ``P * V`` for the interleaved placement, else :attr:`n_blocks`."""
    return self.n_blocks or self.P * self.V

  @property
  def makespan(self) -> float:
    """Time from the first start to the last end."""
    return max(self.end.values()) - min(self.start.values())


def without_gc(fn):
  """Run ``fn`` with Python's cyclic garbage collector paused (restored after).

  For the pure-Python passes over every action of a schedule: they allocate about a million
  small acyclic objects (actions, keys, times) at ``S = 64`` and create no cycles, yet each
  allocation burst triggers full collections that scan the whole heap (about 40% of the time
  of building PipeDream's programs for ``S = 1..64``). Reference counting still frees
  everything; nested uses are fine. The pause is process-wide (other threads' garbage waits
  too, for well under a second); a collector the caller disabled stays disabled.
  """
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    if not gc.isenabled():
      return fn(*args, **kwargs)
    gc.disable()
    try:
      return fn(*args, **kwargs)
    finally:
      gc.enable()
  return wrapper


def block_of(action: Action, P: int) -> int:
  """Block (virtual stage) of an action: :attr:`Action.block`, else ``chunk * P + stage``."""
  return action.block if action.block >= 0 else action.chunk * P + action.stage


def dependencies(kind: str, m: int, b: int, S: int, split_backward: bool):
  """The actions ``(kind, m, block)`` that must end before ``(kind, m, b)`` may start.

  Args:
    kind: ``"F"``, ``"B"`` or ``"W"``.
    m: microbatch.
    b: block.
    S: number of blocks.
    split_backward: whether the schedule has separate ``W`` actions.

  Returns:
    list of ``(kind, m, block)`` keys.
  """
  if kind == "F":
    return [("F", m, b - 1)] if b > 0 else []
  if kind == "B":
    deps = [("F", m, b)]
    if b < S - 1:
      deps.append(("B", m, b + 1))
    return deps
  if kind == "W":
    return [("B", m, b)]
  raise ValueError(f"unknown action kind {kind!r}")


@without_gc
def time_schedule(
    actions: Sequence[Sequence[Action]],
    *,
    V: int = 1,
    durations: Mapping[str, float] | None = None,
    latency: float = 0.0,
) -> TimedSchedule:
  """Timing pass: list-schedule each device's actions as early as possible.

  ``start(a) = max(free(device), max_{d in deps(a)} end(d) + latency * [d on another
  device])`` and ``end(a) = start(a) + duration(kind(a))``, processing each device's list in
  order (see the module docstring for the dependencies).

  Args:
    actions: ``actions[p]`` is the ordered list of device ``p``.
    V: chunks per device.
    durations: per-kind duration, default ``F = B = W = 1``. A value may also be a sequence
      indexed by block for heterogeneous stages.
    latency: point-to-point delay added to every dependency that crosses devices.

  Returns:
    the :class:`TimedSchedule`.

  Raises:
    ValueError: on a deadlock (an order that can never run) or a duplicate action.
  """
  P = len(actions)
  explicit = any(a.block >= 0 for acts in actions for a in acts)
  S = (1 + max(block_of(a, P) for acts in actions for a in acts)) if explicit else P * V
  dur = {"F": 1.0, "B": 1.0, "W": 1.0}
  if durations:
    dur.update(durations)
  split = any(a.kind == "W" for acts in actions for a in acts)
  M = 1 + max((a.microbatch for acts in actions for a in acts), default=-1)

  per_block = {k: isinstance(d, (list, tuple, np.ndarray)) for k, d in dur.items()}

  def duration(kind: str, b: int) -> float:
    return float(dur[kind][b]) if per_block[kind] else float(dur[kind])

  # Per device, each action's key, dependencies and duration, computed once (the loop below
  # may look at a blocked action several times).
  plans = []
  for acts in actions:
    plan = []
    for a in acts:
      b = block_of(a, P)
      deps = tuple(dependencies(a.kind, a.microbatch, b, S, split))
      plan.append(((a.kind, a.microbatch, b), deps, duration(a.kind, b)))
    plans.append(plan)
  start: dict = {}
  end: dict = {}
  device_of: dict = {}
  ptr = [0] * P
  free = [0.0] * P
  total = sum(len(a) for a in actions)
  placed = 0
  while placed < total:
    progress = False
    for p in range(P):
      plan, i, t_free = plans[p], ptr[p], free[p]
      while i < len(plan):
        key, deps, d_kind = plan[i]
        if key in end:
          raise ValueError(f"duplicate action {actions[p][i]}")
        t = t_free
        for d in deps:
          e = end.get(d)
          if e is None:
            break
          if latency and device_of[d] != p:
            e += latency
          if e > t:
            t = e
        else:  # every dependency has ended: place the action
          start[key] = t
          end[key] = t_free = t + d_kind
          device_of[key] = p
          i += 1
          placed += 1
          progress = True
          continue
        break
      ptr[p], free[p] = i, t_free
    if not progress:
      stuck = [actions[p][ptr[p]] for p in range(P) if ptr[p] < len(actions[p])]
      raise ValueError(f"schedule deadlocks; next actions per device: {stuck}")
  return TimedSchedule(
      P=P, V=V, M=M, actions=tuple(tuple(a) for a in actions), start=start, end=end,
      update_kind="W" if split else "B", n_blocks=S if explicit else 0)


def update_order(timed: TimedSchedule) -> tuple[np.ndarray, dict]:
  """All block updates in the order they are applied.

  Returns:
    ``(times, position)``: ``times`` is the sorted array of update times, and
    ``position[(m, b)]`` the 0-based rank of the update of block ``b`` by microbatch ``m``
    (ties in time broken by block index).
  """
  k = timed.update_kind
  ups = sorted((timed.end[(k, m, b)], b, m) for m in range(timed.M) for b in range(timed.S))
  times = np.array([t for t, _, _ in ups])
  position = {(m, b): r for r, (_, b, m) in enumerate(ups)}
  return times, position


@without_gc
def delay_tables(timed: TimedSchedule, ms: Sequence[int], read_kind: str = "F") -> np.ndarray:
  """Staleness pass: the S x S tables ``tau[i][j]`` of the microbatches ``ms``.

  ``tau[i][j] = rank(update(m, i)) - #{updates with time <= start(read_kind(m, j))}``
  (module docstring conventions). ``read_kind="B"`` gives the delays of a backward that
  reads the *current* weights (no stashing, as in PipeMare).

  Args:
    timed: a timed schedule.
    ms: microbatch indices.
    read_kind: the action whose start reads the weights.

  Returns:
    int64 array of shape ``(len(ms), S, S)``.
  """
  times, position = update_order(timed)
  S = timed.S
  read_t = np.array([[timed.start[(read_kind, m, j)] for j in range(S)] for m in ms])
  seen = np.searchsorted(times, read_t, side="right")  # (len(ms), S)
  rank = np.array([[position[(m, i)] for i in range(S)] for m in ms])
  return (rank[:, :, None] - seen[:, None, :]).astype(np.int64)


def delay_table(timed: TimedSchedule, m: int, read_kind: str = "F") -> np.ndarray:
  """The ``(S, S)`` delay table of one microbatch ``m`` (see :func:`delay_tables`)."""
  return delay_tables(timed, [m], read_kind)[0]


class SteadyStateError(ValueError):
  """Raised when the per-microbatch delay tables of the central window disagree."""


def steady_state_delay_table(
    timed: TimedSchedule, window: Sequence[int] | None = None, read_kind: str = "F"
) -> np.ndarray:
  """The steady-state delay table, checked to be the same for every microbatch of a window.

  Args:
    timed: a timed schedule with enough microbatches (at least ``2 * S + 2``, say).
    window: the microbatches to compare; default the central third of ``0..M-1``.
    read_kind: see :func:`delay_table`.

  Returns:
    the common ``(S, S)`` table.

  Raises:
    SteadyStateError: if two microbatches of the window have different tables.
  """
  M = timed.M
  if window is None:
    window = range(M // 3, max(M // 3 + 1, (2 * M) // 3))
  window = list(window)
  tables = delay_tables(timed, window, read_kind)
  for m, t in zip(window, tables):
    if not np.array_equal(t, tables[0]):
      raise SteadyStateError(
          f"delay table of microbatch {m} differs from that of microbatch {window[0]}: "
          "the schedule has no steady state over this window")
  return tables[0]


def idle_intervals(timed: TimedSchedule, p: int) -> list[tuple[float, float]]:
  """Gaps ``[a, b)`` with ``a < b`` between consecutive actions of device ``p``."""
  P = timed.P
  spans = [(timed.start[(a.kind, a.microbatch, block_of(a, P))],
            timed.end[(a.kind, a.microbatch, block_of(a, P))]) for a in timed.actions[p]]
  return [(e0, s1) for (_, e0), (s1, _) in zip(spans, spans[1:]) if s1 > e0]


class ScheduleNotApplicable(ValueError):
  """Raised when a schedule does not apply to ``(P, M, V)``; the message says why."""


class Schedule(abc.ABC):
  """A pipeline schedule: per-device action lists plus update semantics.

  Subclasses are small, final and pure: :meth:`actions` depends only on its arguments.

  Attributes:
    name: registry name.
    semantics: a :class:`~rpd.schedules.semantics.Semantics` (when updates land, which
      weights the backward reads): ``SYNC_FLUSH``, ``ASYNC_STASH``, ``ASYNC_NOSTASH`` or
      ``DOUBLE_BUFFERED``. Ask it (``semantics.synchronous``), never compare its name.
  """

  name: str = ""
  semantics: Semantics = ASYNC_STASH
  #: whether the schedule places ``V > 1`` chunks per device (interleaved schedules).
  chunked: bool = False
  #: whether the backward is split into ``B`` (input gradient) and ``W`` (weight gradient).
  split_backward: bool = False
  #: one line for tables: the paper the schedule comes from.
  reference: str = ""
  #: full weight replicas each device holds (Chimera's two pipelines: 2).
  replicas: int = 1

  def check(self, P: int, M: int, V: int = 1) -> None:
    """Raise :class:`ScheduleNotApplicable` if the schedule does not apply to ``(P, M, V)``.

    The default accepts any ``P, M >= 1`` and, unless :attr:`chunked`, only ``V = 1``.
    """
    if P < 1 or M < 1 or V < 1:
      raise ScheduleNotApplicable(f"needs P, M, V >= 1, got P={P}, M={M}, V={V}")
    if V != 1 and not self.chunked:
      raise ScheduleNotApplicable(f"{self.name} holds one chunk per device, got V={V}")

  @abc.abstractmethod
  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """Per-device ordered action lists for ``P`` devices, ``M`` microbatches, ``V`` chunks."""

  def timed(self, P: int, M: int, V: int = 1, durations=None, latency: float = 0.0):
    """The :class:`TimedSchedule` of :meth:`actions` (see :func:`time_schedule`)."""
    return time_schedule(self.actions(P, M, V), V=V, durations=durations, latency=latency)

  def steady_state_microbatches(self, P: int, V: int = 1) -> int:
    """A number of microbatches large enough for the central third to be in steady state."""
    return 6 * P * V + 12

  def delay_table(self, P: int, V: int = 1, durations=None, latency: float = 0.0) -> np.ndarray:
    """Steady-state delay table ``tau`` (S x S, int64); zeros for synchronous semantics."""
    if self.semantics.synchronous:
      return np.zeros((P * V, P * V), dtype=np.int64)
    timed = self.timed(P, self.steady_state_microbatches(P, V), V, durations, latency)
    return steady_state_delay_table(timed)


@without_gc
def one_f_one_b_actions(P: int, M: int) -> list[list[Action]]:
  """The 1F1B order shared by PipeDream, PipeDream-Flush, PipeDream-2BW and PipeMare.

  Device ``p`` (0-based) runs ``w = min(P - 1 - p, M)`` warm-up forwards, then alternates
  ``F(w + k), B(k)``, then drains the remaining backwards. The schedules that use it differ
  only in their update semantics (:attr:`Schedule.semantics`).

  Returns:
    ``actions[p]`` for ``p`` in ``0..P-1``.
  """
  out = []
  for p in range(P):
    w = min(P - 1 - p, M)
    acts = [Action(p, "F", m) for m in range(w)]
    for m in range(M):
      if w + m < M:
        acts.append(Action(p, "F", w + m))
      acts.append(Action(p, "B", m))
    out.append(acts)
  return out
