"""Property tests of the timing and staleness passes (hypothesis) for PipeDream."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rpd.schedules import (Action, SteadyStateError, delay_table, get_schedule,
                           idle_intervals, steady_state_delay_table, time_schedule)
from rpd.schedules.core import block_of

PD = get_schedule("pipedream")


def _spans(timed):
  for p, acts in enumerate(timed.actions):
    for a in acts:
      key = (a.kind, a.microbatch, block_of(a, timed.P))
      yield p, a, timed.start[key], timed.end[key]


@settings(max_examples=40, deadline=None)
@given(P=st.integers(1, 9), M=st.integers(1, 30),
       f=st.sampled_from([0.5, 1.0, 2.0]), b=st.sampled_from([0.5, 1.0, 2.0, 3.0]),
       latency=st.sampled_from([0.0, 0.25, 1.0]))
def test_timing_pass_invariants(P, M, f, b, latency):
  timed = PD.timed(P, M, durations={"F": f, "B": b}, latency=latency)
  # Each stage runs F and B of every microbatch exactly once.
  for p, acts in enumerate(timed.actions):
    assert sorted((a.kind, a.microbatch) for a in acts) == sorted(
        [("F", m) for m in range(M)] + [("B", m) for m in range(M)])
  # All dependencies hold (with latency across devices).
  for m in range(M):
    for s in range(P):
      if s > 0:
        assert timed.start[("F", m, s)] >= timed.end[("F", m, s - 1)] + latency - 1e-12
      assert timed.start[("B", m, s)] >= timed.end[("F", m, s)] - 1e-12
      if s < P - 1:
        assert timed.start[("B", m, s)] >= timed.end[("B", m, s + 1)] + latency - 1e-12
  # No stage overlaps two actions, and durations are respected.
  for p in range(P):
    spans = sorted((s0, e0) for q, a, s0, e0 in _spans(timed) if q == p)
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
      assert s1 >= e0 - 1e-12
  for _, a, s0, e0 in _spans(timed):
    assert e0 - s0 == pytest.approx({"F": f, "B": b}[a.kind])


@settings(max_examples=25, deadline=None)
@given(P=st.integers(1, 12))
def test_pipedream_steady_state_has_no_idle_time(P):
  M = 6 * P + 12
  timed = PD.timed(P, M)
  # Steady state: after the last warm-up forward of stage 0 reaches the end, before the drain.
  t_lo = timed.start[("B", 0, 0)]
  t_hi = timed.start[("F", M - 1, 0)]
  for p in range(P):
    for a, b in idle_intervals(timed, p):
      assert b <= t_lo or a >= t_hi, f"stage {p} idle in steady state on [{a}, {b})"


def test_pipedream_warmup_counts():
  acts = PD.actions(5, 12)
  for p in range(5):
    kinds = [a.kind for a in acts[p]]
    first_b = kinds.index("B")
    assert first_b == 5 - p  # S - s warm-up forwards (1-based s = p + 1), then F before B
    assert kinds[first_b - 1] == "F"


def test_delay_table_is_the_same_for_every_steady_microbatch():
  timed = PD.timed(7, 80)
  tables = [delay_table(timed, m) for m in range(20, 60)]
  assert all(np.array_equal(t, tables[0]) for t in tables)


def test_steady_state_check_can_fail():
  # Too few microbatches: the central window still contains warm-up effects.
  timed = PD.timed(6, 7)
  with pytest.raises(SteadyStateError):
    steady_state_delay_table(timed, window=range(0, 7))


def test_deadlock_is_reported():
  bad = [[Action(0, "B", 0), Action(0, "F", 0)]]
  with pytest.raises(ValueError, match="deadlock"):
    time_schedule(bad)


def test_single_stage_is_plain_sgd():
  assert PD.delay_table(1).tolist() == [[0]]
