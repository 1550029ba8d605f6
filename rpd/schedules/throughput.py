"""Simulated time per block update of a schedule, as the engine trains under it.

The engine's pipeline rules apply one microbatch's gradient per ``S`` block updates. For a
schedule with ``P = S`` stages and the user-level durations of ``rpd schedules`` (default
``F = B = W = 1`` time unit, converted by :func:`rpd.schedules.metrics.timing_durations`, so
a schedule that does not split the backward runs ``B + W`` as one backward; no latency), the
time per microbatch is measured on the timing pass:

* asynchronous schedules (no flush): the steady-state period
  ``(makespan(2M) - makespan(M)) / M`` after a fill ``makespan(M) - M * period``;
* flushing schedules train in the engine with one microbatch per synchronous update, so each
  update costs a whole fill-drain, ``makespan(P, 1)`` (their bubble at ``M = 1``; pipelines
  amortize it over ``M`` microbatches per batch, which the engine's one-microbatch batches do
  not model).
"""
from __future__ import annotations

from rpd.schedules.core import Schedule
from rpd.schedules.metrics import timing_durations


def time_per_microbatch(schedule: Schedule, P: int, durations=None) -> tuple[float, float]:
  """``(fill, period)``: simulated time of ``n`` microbatches is ``fill + n * period``.

  Raises:
    ValueError (``ScheduleNotApplicable``): if the schedule does not apply with one chunk.
  """
  dur = timing_durations(schedule, durations, 1)
  if schedule.semantics.synchronous:
    schedule.check(P, 1, 1)
    return 0.0, float(schedule.timed(P, 1, 1, dur).makespan)
  M = schedule.steady_state_microbatches(P, 1)
  schedule.check(P, M, 1)
  schedule.check(P, 2 * M, 1)
  t1 = schedule.timed(P, M, 1, dur).makespan
  t2 = schedule.timed(P, 2 * M, 1, dur).makespan
  period = (t2 - t1) / M
  return float(t1 - M * period), float(period)
