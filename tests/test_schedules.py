"""Every registered schedule: timing invariants (hypothesis), closed forms, delay tables."""
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from rpd.schedules import SCHEDULES, ScheduleNotApplicable, get_schedule
from rpd.schedules.core import SEMANTICS, block_of, one_f_one_b_actions
from rpd.schedules.metrics import schedule_metrics, timing_durations
from rpd.schedules.pipedream_2bw import delay_tables_2bw
from rpd.theory.delay import tau_table

NAMES = sorted(SCHEDULES)
DUR = st.sampled_from([0.5, 1.0, 2.0, 3.0])


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(P=st.integers(1, 6), k=st.integers(1, 4), m=st.integers(1, 20), V=st.integers(2, 3),
       f=DUR, b=DUR, w=st.sampled_from([0.0, 0.5, 1.0, 2.0]),
       latency=st.sampled_from([0.0, 0.25, 1.0]))
def test_timing_invariants(name, P, k, m, V, f, b, w, latency):
  s = SCHEDULES[name]
  M = k * P if (s.chunked or name.startswith("chimera")) else m
  V = (2 if name in ("zb-v", "dualpipe-v") else V) if s.chunked else 1
  try:
    s.check(P, M, V)
  except ScheduleNotApplicable:
    assume(False)
  dur = timing_durations(s, {"F": f, "B": b, "W": w}, V)
  timed = s.timed(P, M, V, dur, latency)
  S = P * V
  assert timed.S == S
  kinds = ("F", "B", "W") if s.split_backward else ("F", "B")
  # Every pass of every (microbatch, block) runs exactly once, on one device that runs all
  # three passes of that (microbatch, block); a device holds V blocks per microbatch.
  for p, acts in enumerate(timed.actions):
    assert all(a.stage == p for a in acts)
  got = sorted((a.kind, a.microbatch, block_of(a, P)) for acts in timed.actions for a in acts)
  assert got == sorted((kd, m, j) for kd in kinds for m in range(M) for j in range(S))
  for p, acts in enumerate(timed.actions):
    per_m = {}
    for a in acts:
      per_m.setdefault((a.microbatch, block_of(a, P)), []).append(a.kind)
    assert all(sorted(v) == sorted(kinds) for v in per_m.values())
    assert all(sum(1 for (mm, _) in per_m if mm == m) == V for m in range(M))
  dev = {(a.kind, a.microbatch, block_of(a, P)): p
         for p, acts in enumerate(timed.actions) for a in acts}

  def after(x, y):  # x starts after y ends (+ latency across devices)
    lat = latency if dev[x] != dev[y] else 0.0
    assert timed.start[x] >= timed.end[y] + lat - 1e-9, (x, y)

  for m in range(M):
    for j in range(S):
      if j > 0:
        after(("F", m, j), ("F", m, j - 1))
      after(("B", m, j), ("F", m, j))
      if j < S - 1:
        after(("B", m, j), ("B", m, j + 1))
      if s.split_backward:
        after(("W", m, j), ("B", m, j))
  for p, acts in enumerate(timed.actions):
    spans = [(timed.start[(a.kind, a.microbatch, block_of(a, P))],
              timed.end[(a.kind, a.microbatch, block_of(a, P))]) for a in acts]
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
      assert s1 >= e0 - 1e-9  # list order, no overlap
    for a, (s0, e0) in zip(acts, spans):
      assert e0 - s0 == pytest.approx(dur[a.kind])


@pytest.mark.parametrize("name", NAMES)
def test_engine_interface(name):
  """What ``--rule schedule:NAME`` needs: semantics, actions, timed, steady state, tables."""
  s = SCHEDULES[name]
  assert s.semantics in SEMANTICS
  P, V = (4 if name.startswith("chimera") else 3), (2 if s.chunked else 1)
  n = s.steady_state_microbatches(P, V)
  assert n >= 2 * P * V
  assert len(s.actions(P, 2 * P, V)) == P
  assert s.timed(P, 2 * P, V).makespan > 0
  tau = s.delay_table(P, V)
  assert tau.shape == (P * V, P * V) and tau.dtype == np.int64
  assert (tau >= 0).all()
  if s.semantics.synchronous:
    assert not tau.any()
  else:
    assert tau.max() > 0
  if s.semantics.split_reads:
    tb = s.delay_table_backward(P, V)
    assert tb.shape == tau.shape and (tb >= 0).all()


# ------------------------------------------------------------------ closed forms: bubble
@settings(max_examples=30, deadline=None)
@given(P=st.integers(1, 8), M=st.integers(1, 24), f=DUR, b=DUR)
def test_gpipe_and_1f1b_flush_bubble(P, M, f, b):
  for name in ("gpipe", "1f1b-flush"):
    r = schedule_metrics(get_schedule(name), P, M, durations={"F": f, "B": b, "W": 0},
                         tables=False)
    assert r["bubble_ratio"] == pytest.approx((P - 1) / (M + P - 1), abs=1e-12)
    assert r["makespan"] == pytest.approx((M + P - 1) * (f + b))


@settings(max_examples=30, deadline=None)
@given(P=st.integers(1, 8), k=st.integers(1, 5), V=st.integers(2, 4), f=DUR, b=DUR)
def test_interleaved_bubble(P, k, V, f, b):
  M = k * P
  r = schedule_metrics(get_schedule("interleaved-1f1b"), P, M, V,
                       durations={"F": f, "B": b, "W": 0}, tables=False)
  assert r["bubble_ratio"] == pytest.approx((P - 1) / (V * M + P - 1), abs=1e-12)
  assert r["bubble_over_compute"] == pytest.approx((P - 1) / (V * M), abs=1e-12)


def test_interleaved_not_applicable():
  s = get_schedule("interleaved-1f1b")
  with pytest.raises(ScheduleNotApplicable, match="V >= 2"):
    s.actions(4, 8, 1)
  with pytest.raises(ScheduleNotApplicable, match="multiple of its rounds"):
    s.actions(4, 9, 2)   # PyTorch refuses it too: 2 rounds do not divide 9
  s.actions(4, 6, 2)     # one round of 6 microbatches, as PyTorch


W_SMALL = st.sampled_from([0.25, 0.5, 1.0])


@settings(max_examples=30, deadline=None)
@given(P=st.integers(2, 7), extra=st.integers(0, 10), f=st.sampled_from([1.0, 1.5, 2.0]),
       b=st.sampled_from([1.0, 1.5, 2.0, 3.0]), w=W_SMALL)
def test_zero_bubble_paper_formulas(P, extra, f, b, w):
  """Qi et al. 2024, Table 2: bubble per stage (inside its own span) for W <= F."""
  assume(w <= f)
  M = 2 * P - 1 + extra
  d = {"F": f, "B": b, "W": w}
  one = schedule_metrics(get_schedule("1f1b-flush"), P, M, durations=d, tables=False)
  h1 = schedule_metrics(get_schedule("zb-h1"), P, M, durations=d, tables=False)
  h2 = schedule_metrics(get_schedule("zb-h2"), P, M, durations=d, tables=False)
  assert one["max_stage_span_idle"] == pytest.approx((P - 1) * (f + b + w))
  assert h1["max_stage_span_idle"] == pytest.approx((P - 1) * (f + b - w))
  assert h2["max_stage_span_idle"] == pytest.approx((P - 1) * max(0.0, f + b - 2 * w))
  assert h1["peak_activations"] == one["peak_activations"] == P
  assert h2["peak_activations"] == 2 * P - 1


def test_zero_bubble_formula_disagreements_are_real():
  """Recorded disagreements (reported, not hidden): ZB-H1 with W > F keeps (P-1)F of
  bubble where the formula gives (P-1)(F+B-W); ZB-H2 with M < 2P-1 cannot fill the warm-up."""
  P = 4
  h1 = schedule_metrics(get_schedule("zb-h1"), P, 12, durations={"F": 1, "B": 1, "W": 2},
                        tables=False)
  assert h1["max_stage_span_idle"] == pytest.approx((P - 1) * 1.0)  # formula: 0
  h2 = schedule_metrics(get_schedule("zb-h2"), P, 3, durations={"F": 1, "B": 1, "W": 1},
                        tables=False)
  assert h2["max_stage_span_idle"] > 0  # formula: 0


# ---------------------------------------------------------- memory and weight versions
@pytest.mark.parametrize("P,M", [(1, 5), (4, 3), (4, 16), (6, 20)])
def test_memory_and_versions(P, M):
  g = schedule_metrics(get_schedule("gpipe"), P, M, tables=False)
  o = schedule_metrics(get_schedule("1f1b-flush"), P, M, tables=False)
  pd = schedule_metrics(get_schedule("pipedream"), P, M, tables=False)
  assert g["peak_activations_per_stage"] == [M] * P
  assert o["peak_activations_per_stage"] == [min(P - p, M) for p in range(P)]
  assert g["weight_versions"] == o["weight_versions"] == 1
  assert pd["weight_versions_per_stage"] == [P - p for p in range(P)]
  assert schedule_metrics(get_schedule("pipemare"), P, M, tables=False)["weight_versions"] == 1
  if M >= P:
    bw = schedule_metrics(get_schedule("pipedream-2bw"), P, M, tables=False)
    assert bw["weight_versions_per_stage"] == [2] * P


@pytest.mark.parametrize("name", ["pipedream", "pipedream-2bw", "pipemare"])
@pytest.mark.parametrize("P", [1, 3, 6])
def test_async_steady_state_has_no_bubble(name, P):
  r = schedule_metrics(get_schedule(name), P, max(P, 2), tables=False)
  assert r["steady_bubble_ratio"] == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------ delay tables
@pytest.mark.parametrize("S", range(1, 13))
def test_pipedream_delay_is_theory(S):
  assert np.array_equal(get_schedule("pipedream").delay_table(S), tau_table(S))


@pytest.mark.parametrize("S", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("durations", [None, {"F": 1.0, "B": 2.0}, {"F": 2.0, "B": 1.0}])
def test_2bw_delay_closed_form(S, durations):
  """tau[i][j] = 2S - 1 + j - i (0-based), tau_max = 3S - 2, for any batch >= S."""
  i, j = np.indices((S, S))
  for batch in (S, S + 3, 2 * S):
    tau = get_schedule("pipedream-2bw").delay_table(S, durations=durations, batch=batch)
    assert np.array_equal(tau, 2 * S - 1 + j - i)
    assert tau.max() == 3 * S - 2


def test_2bw_premise_is_checked():
  s = get_schedule("pipedream-2bw")
  timed = s.timed(6, 9 * 2)
  with pytest.raises(ScheduleNotApplicable, match="not ready"):
    delay_tables_2bw(timed, 2, [8])


@pytest.mark.parametrize("S", [2, 4, 7])
def test_pipemare_tables(S):
  pm = get_schedule("pipemare")
  assert np.array_equal(pm.delay_table(S), tau_table(S))  # same timeline as PipeDream
  raw = pm.delay_table_backward(S, raw=True)
  tb = pm.delay_table_backward(S)
  i, j = np.indices((S, S))
  assert (raw[i > j] < 0).all()          # block j < i runs its backward after i's update
  assert np.array_equal(tb[j > i], raw[j > i])
  assert np.array_equal(tb[j <= i], tau_table(S)[j <= i])
  assert (raw[j > i] < tau_table(S)[j > i]).all()  # the backward reads newer weights


def test_sync_schedules_have_zero_delays():
  for name, s in SCHEDULES.items():
    if s.semantics.synchronous:
      V = 2 if s.chunked else 1
      assert schedule_metrics(s, 4, 8, V, tables=False)["tau_max"] == 0


def test_shared_1f1b_order_is_pipedreams():
  for P, M in [(1, 1), (3, 2), (5, 12)]:
    assert get_schedule("pipedream").actions(P, M) == one_f_one_b_actions(P, M)
