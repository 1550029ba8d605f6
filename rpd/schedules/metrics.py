"""Metrics of a simulated schedule: makespan, bubble, activation memory, weight versions, delays.

Definitions (time conventions: :mod:`rpd.schedules.core`)
---------------------------------------------------------
* Durations. ``F``, ``B``, ``W`` are the forward, the input-gradient backward and the
  weight-gradient backward of one microbatch on one device's share of the model (``1/P`` of
  the layers). A schedule that does not split the backward runs ``B + W`` as one ``B``
  action, and an interleaved schedule runs each of its ``V`` chunks in ``1/V`` of the time
  (:func:`timing_durations`), so all schedules do the same work; ``W = 0`` gives the classic
  ``F, B`` setting.
* ``makespan``: first start to last end of one run of ``M`` microbatches from an empty to an
  empty pipeline (one batch for the flushing schedules).
* ``bubble_ratio = idle / (P * makespan)``, idle summed over the ``P`` devices over the whole
  makespan (the "rectangle"): the fraction of device time spent idle. This is the
  definition of the issue ("idle time / total stage time") and of GPipe's
  ``(P - 1)/(M + P - 1)``.
* ``bubble_over_compute = idle / busy``: the same idle time over the compute time (Megatron's
  ``(P - 1)/(V M)`` and the ``(K - 1)/M`` of explainers are of this kind).
* ``max_stage_span_idle``: the largest idle time of one device *inside its own span* (its
  first start to its last end), in time units. Zero Bubble's bubble sizes
  (``(P - 1)(T_F + T_B - T_W)`` for ZB-H1, ``(P - 1)(T_F + T_B - 2 T_W)`` for ZB-H2) count
  this: the paper's parallelogram tiles with the next iteration once the optimizer
  synchronisation is bypassed.
* ``steady_bubble_ratio``: for schedules without a flush (async semantics), the idle fraction
  over the window between the starts of ``F(M'/3, 0)`` and ``F(2M'/3, 0)`` of a long run of
  ``M'`` microbatches (the cost in continuous operation); for flushing schedules it equals
  ``bubble_ratio`` (every batch repeats the timeline).
* ``peak_activations[p]``: the largest number of (microbatch, block) activations device ``p``
  holds at once, an activation being held from the start of ``F(m, b)`` to the end of its
  last backward action (``W(m, b)`` for split schedules, else ``B(m, b)``): the convention
  under which ZB-H1 matches 1F1B's peak ``P``. ``peak_activations_until_b`` releases at the
  end of ``B`` instead. Unit: one block's activations (``1/V`` of a device's layers).
* ``weight_versions[p]``: the largest number of distinct versions of one block that device
  ``p`` must hold at once in a long run: the newest version plus every older version still
  needed by an in-flight microbatch (stashing keeps the version its forward read;
  double-buffering the version ``W^(t-1)`` of batch ``t``; without stashing only the
  current one; synchronous schedules one).
* Delay tables (:mod:`rpd.schedules.core` conventions): zero for ``sync_flush``; the
  steady-state table for ``async_stash``; forward and backward tables for ``async_nostash``
  (PipeMare); the 2BW pass of :mod:`rpd.schedules.pipedream_2bw` with a batch of ``M``
  microbatches for ``double_buffered``. ``tau_max`` is the largest entry of all of them.
  When the per-microbatch tables of the central window differ (no steady state, e.g. with a
  latency they alternate), the entrywise maximum over the window is reported and
  ``tau_steady`` is ``False``.
* Delay conventions. ``tau`` counts *block updates* (of any block) between the read and the
  update (module :mod:`rpd.schedules.core`): PipeDream's delays count from the actual read
  of the weights by the forward. ``tau_versions_max`` counts *versions* (optimizer steps of
  the read block): the largest number of updates of block ``j`` applied after microbatch
  ``m`` read block ``j`` and before ``m``'s gradient updates block ``i``, over the steady
  window (PipeDream stage ``s`` of ``S``, 0-based: ``S - 1 - s`` on the diagonal). For 2BW
  the version is counted from when it was *created* (the 2BW paper's "one version stale"):
  ``tau_versions_max = 1``, while the smallest block-update maximum that reproduces the same
  values is ``2S - 1`` and :attr:`tau_max` reports the table of the read, ``3S - 2``.
  Synchronous schedules: 0 and 0. ``DELAY_CONVENTION`` states this in one line.
* Memory in device-shares (for choosing between schedules): ``activation_memory`` =
  ``peak_activations / V`` for chunked schedules (a block of an interleaved or V-shaped
  schedule is ``1/V`` of a device's layers), ``weight_memory`` = ``weight_versions`` times
  the schedule's weight :attr:`~rpd.schedules.core.Schedule.replicas` (2 for Chimera).
"""
from __future__ import annotations

import bisect
from typing import Mapping

import numpy as np

from rpd.schedules.core import (DEFAULT_DURATIONS, Schedule, ScheduleNotApplicable,
                                SteadyStateError, TimedSchedule, block_of, delay_tables)

_EPS = 1e-9


def timing_durations(schedule: Schedule, durations: Mapping[str, float] | None = None,
                     V: int = 1) -> dict:
  """Per-kind, per-block durations for the timing pass of ``schedule``.

  ``F, B, W`` (default 1) are per device share of the model; a schedule without ``W``
  actions runs the full backward ``B + W`` as its ``B``; a chunked schedule divides every
  duration by its ``V`` chunks.
  """
  d = dict(DEFAULT_DURATIONS)
  d.update(durations or {})
  scale = 1.0 / V if schedule.chunked else 1.0
  extra = ({"FB": d["FB"] * scale} if "FB" in d and hasattr(schedule, "overlapped") else {})
  if schedule.split_backward:
    return {"F": d["F"] * scale, "B": d["B"] * scale, "W": d["W"] * scale, **extra}
  return {"F": d["F"] * scale, "B": (d["B"] + d["W"]) * scale, **extra}


def _spans(timed: TimedSchedule, p: int) -> list[tuple[float, float]]:
  """Start and end of every action of device ``p``, in list order."""
  out = []
  for a in timed.actions[p]:
    key = (a.kind, a.microbatch, block_of(a, timed.P))
    out.append((timed.start[key], timed.end[key]))
  return out


def busy_time(timed: TimedSchedule) -> np.ndarray:
  """Compute time of every device, shape ``(P,)``."""
  return np.array([sum(e - s for s, e in _spans(timed, p)) for p in range(timed.P)])


def bubble(timed: TimedSchedule) -> dict:
  """``bubble_ratio``, ``bubble_over_compute``, ``idle`` per device and ``max_stage_span_idle``.

  See the module docstring for the definitions.
  """
  busy = busy_time(timed)
  span = timed.makespan
  idle = span - busy
  own = []
  for p in range(timed.P):
    sp = _spans(timed, p)
    own.append(max(e for _, e in sp) - min(s for s, _ in sp) - busy[p] if sp else 0.0)
  return {
      "bubble_ratio": float(idle.sum() / (timed.P * span)),
      "bubble_over_compute": float(idle.sum() / busy.sum()),
      "idle_per_stage": [float(x) for x in idle],
      "stage_span_idle": [float(x) for x in own],
      "max_stage_span_idle": float(max(own)),
  }


def _last_backward(timed: TimedSchedule, until: str) -> str:
  return "W" if (until == "W" and timed.update_kind == "W") else "B"


def peak_held(timed: TimedSchedule, release) -> list:
  """Peak held activation memory per device: each forward ``(m, b)`` acquires 1 at its start
  and ``release(m, b)`` gives ``(time, amount)`` pairs that free it (amounts summing to 1);
  a release at ``t`` happens before an acquire at ``t``. Shared by :func:`peak_activations`
  and the memory models of :mod:`rpd.schedules.memory`."""
  out = []
  for p in range(timed.P):
    events = []
    for a in timed.actions[p]:
      if a.kind != "F":
        continue
      b = block_of(a, timed.P)
      events.append((timed.start[("F", a.microbatch, b)], 1))
      events.extend((t, -amount) for t, amount in release(a.microbatch, b))
    events.sort(key=lambda e: (e[0], e[1]))
    held = peak = 0
    for _, d in events:
      held += d
      peak = max(peak, held)
    out.append(peak)
  return out


def peak_activations(timed: TimedSchedule, until: str = "W") -> list[int]:
  """Peak number of held (microbatch, block) activations per device.

  Args:
    until: ``"W"`` (default) holds an activation until the end of its last backward action
      (``W`` in split schedules); ``"B"`` releases it at the end of ``B``.
  """
  last = _last_backward(timed, until)
  return peak_held(timed, lambda m, b: [(timed.end[(last, m, b)], 1)])


def _read_versions(schedule: Schedule, timed: TimedSchedule, batch: int | None):
  """``(read, produced)``: version read by ``(m, b)`` and sorted version-creation times of ``b``.

  Versions are numbered by the updates of the block they include.
  """
  k = timed.update_kind
  M, S = timed.M, timed.S
  if schedule.semantics.double_buffered:
    batch = batch or M
    n = M // batch
    produced = {b: sorted(timed.end[(k, t * batch + batch - 1, b)] for t in range(n))
                for b in range(S)}
    read = {(m, b): max(m // batch - 1, 0) for m in range(M) for b in range(S)}
    return read, produced
  if schedule.semantics.synchronous:
    return ({(m, b): 0 for m in range(M) for b in range(S)}, {b: [] for b in range(S)})
  produced = {b: sorted(timed.end[(k, m, b)] for m in range(M)) for b in range(S)}
  if schedule.semantics.split_reads:
    # No stash: every read is of the current version; nothing older is kept.
    return None, produced
  read = {(m, b): bisect.bisect_right(produced[b], timed.start[("F", m, b)] + _EPS)
          for m in range(M) for b in range(S)}
  return read, produced


def weight_versions(schedule: Schedule, timed: TimedSchedule,
                    batch: int | None = None) -> list[int]:
  """Peak number of distinct versions of one block that each device keeps (see module doc)."""
  read, produced = _read_versions(schedule, timed, batch)
  if read is None:
    return [1] * timed.P
  last = _last_backward(timed, "W")
  out = []
  for p in range(timed.P):
    peak = 1
    for c in range(timed.V):
      b = c * timed.P + p
      spans = [(timed.start[("F", m, b)], timed.end[(last, m, b)], read[(m, b)])
               for m in range(timed.M)]
      times = sorted({s for s, _, _ in spans} | set(produced[b]))
      for x in times:
        newest = bisect.bisect_right(produced[b], x + _EPS)
        kept = {newest} | {v for s, e, v in spans if s <= x + _EPS and x < e - _EPS}
        peak = max(peak, len(kept))
    out.append(peak)
  return out


def steady_bubble_ratio(timed: TimedSchedule) -> float:
  """Idle fraction between the starts of ``F(M/3, 0)`` and ``F(2M/3, 0)`` of a long run."""
  lo = timed.start[("F", timed.M // 3, 0)]
  hi = timed.start[("F", (2 * timed.M) // 3, 0)]
  busy = 0.0
  for p in range(timed.P):
    for s, e in _spans(timed, p):
      busy += max(0.0, min(e, hi) - max(s, lo))
  return float(1.0 - busy / (timed.P * (hi - lo)))


def delay_tables_of(schedule: Schedule, P: int, M: int, V: int = 1, durations=None,
                    latency: float = 0.0) -> dict[str, np.ndarray]:
  """The steady-state delay table(s) of a schedule, by semantics.

  Returns:
    ``{"tau": ...}``, plus ``"tau_backward"`` for ``async_nostash``. ``durations`` are
    timing-pass durations (see :func:`timing_durations`); ``M`` is the 2BW batch.
  """
  S = P * V
  if schedule.semantics.synchronous:
    return {"tau": np.zeros((S, S), dtype=np.int64)}
  if schedule.semantics.double_buffered:
    return {"tau": schedule.delay_table(P, V, durations, latency, batch=M)}
  try:
    out = {"tau": schedule.delay_table(P, V, durations, latency)}
    if schedule.semantics.split_reads:
      out["tau_backward"] = schedule.delay_table_backward(P, V, durations, latency)
    return out
  except SteadyStateError:
    # No per-microbatch steady state (e.g. with latency the tables alternate between
    # microbatches): report the entrywise maximum over the central window, flagged.
    timed = schedule.timed(P, schedule.steady_state_microbatches(P, V), V, durations, latency)
    window = list(range(timed.M // 3, (2 * timed.M) // 3))
    out = {"tau": delay_tables(timed, window).max(axis=0), "tau_not_steady": True}
    if schedule.semantics.split_reads:
      tb = delay_tables(timed, window, "B").max(axis=0)
      upper = np.triu(np.ones_like(tb, dtype=bool), k=1)
      out["tau_backward"] = np.where(upper, tb, out["tau"])
    return out


DELAY_CONVENTION = (
    "tau: block updates (any block) between the forward's read of block j and the update of "
    "block i (PipeDream-style, from the actual read); tau_versions: updates of block j itself "
    "in that interval (optimizer steps; 2BW: counted from the version's creation, = 1)")


def versions_delay_max(schedule: Schedule, timed: TimedSchedule) -> int:
  """Largest delay in versions (see the module docstring) over the central third of ``timed``."""
  if schedule.semantics.synchronous:
    return 0
  if schedule.semantics.double_buffered:
    return 1
  k = timed.update_kind
  S, M = timed.S, timed.M
  upd = {b: np.sort([timed.end[(k, m, b)] for m in range(M)]) for b in range(S)}
  best = 0
  for m in range(M // 3, max(M // 3 + 1, (2 * M) // 3)):
    ends = np.array([timed.end[(k, m, i)] for i in range(S)]) - _EPS
    for j in range(S):
      read = timed.start[("F", m, j)]
      lo = np.searchsorted(upd[j], read + _EPS, side="right")
      # updates of j strictly before m's update of each i (for i = j: not m's own update)
      hi = np.searchsorted(upd[j], ends, side="left")
      best = max(best, int(hi.max() - lo))
  return best


def schedule_metrics(schedule: Schedule, P: int, M: int, V: int = 1,
                     durations: Mapping[str, float] | None = None, latency: float = 0.0,
                     tables: bool = True, memory=None) -> dict:
  """All metrics of ``schedule`` for ``P`` devices, ``M`` microbatches, ``V`` chunks.

  Args:
    schedule: a registered schedule.
    P, M, V: devices, microbatches (per batch), chunks per device.
    durations: ``{"F": .., "B": .., "W": ..}`` per block (see :func:`timing_durations`).
    latency: point-to-point latency.
    tables: include the delay tables (lists) in the result.
    memory: the activation memory model (:mod:`rpd.schedules.memory`, default ``rpd``):
      ``peak_memory`` and ``activation_memory`` are counted under it.

  Returns:
    dict with ``schedule``, ``semantics``, ``makespan``, the bubble metrics of
    :func:`bubble`, ``steady_bubble_ratio``, ``peak_activations`` (max over devices) and
    ``peak_activations_per_stage``, ``peak_activations_until_b``, ``weight_versions`` (max)
    and ``weight_versions_per_stage``, ``tau_max``, and with ``tables`` the delay table(s).

  Raises:
    ScheduleNotApplicable: if the schedule does not apply; the message says why.
  """
  schedule.check(P, M, V)
  dur = timing_durations(schedule, durations, V)
  timed = schedule.timed(P, M, V, dur, latency)
  out = {"schedule": schedule.name, "semantics": schedule.semantics.name, "P": P, "M": M, "V": V,
         "durations": dur, "latency": latency, "makespan": float(timed.makespan)}
  out.update(bubble(timed))
  peak = peak_activations(timed, "W")
  out["peak_activations"] = max(peak)
  out["peak_activations_per_stage"] = peak
  out["peak_activations_until_b"] = max(peak_activations(timed, "B"))
  if schedule.semantics.synchronous:
    out["steady_bubble_ratio"] = out["bubble_ratio"]
    long = timed
    batch = None
  else:
    batch = M if schedule.semantics.double_buffered else None
    n_long = (schedule.steady_state_microbatches(P, V, batch) if batch
              else schedule.steady_state_microbatches(P, V))
    long = schedule.timed(P, n_long, V, dur, latency)
    out["steady_bubble_ratio"] = steady_bubble_ratio(long)
  versions = weight_versions(schedule, long, batch)
  out["weight_versions"] = max(versions)
  out["weight_versions_per_stage"] = versions
  out["weight_memory"] = float(max(versions) * schedule.replicas)
  from rpd.schedules.memory import RPD
  memory = memory or RPD
  out["memory_model"] = memory.name
  out["peak_memory"] = float(max(memory.peak(timed)))
  out["activation_memory"] = out["peak_memory"] / (V if schedule.chunked else 1)
  out["tau_versions_max"] = versions_delay_max(schedule, long)
  out["delay_convention"] = DELAY_CONVENTION
  try:
    tabs = delay_tables_of(schedule, P, M, V, dur, latency)
  except (ScheduleNotApplicable, SteadyStateError) as e:
    raise ScheduleNotApplicable(str(e)) from None
  out["tau_steady"] = not tabs.pop("tau_not_steady", False)
  out["tau_max"] = int(max(int(t.max()) for t in tabs.values()))
  if tables:
    out.update({k: t.tolist() for k, t in tabs.items()})
  return out
