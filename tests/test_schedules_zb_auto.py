"""zb-auto never loses to a hand-made schedule at the same memory, and its exact step.

The grid is the issue's: P in {2, 4, 8}, M in {P, 2P, 4P}, (F, B, W) in {(1,1,1), (2,3,1),
(1,2,1)}, in-flight limits L in {P, 2P - 1, 2P}. "Hand-made at the same memory": every
registered synchronous schedule with one chunk and one weight copy per device (zb-auto's own
placement: GPipe, 1F1B, ZB-H1, ZB-H2) whose peak activations (rpd's memory model: from the
start of F to the end of the last backward) are at most L. Chunked (V = 2) schedules and
Chimera's two weight replicas are other placements; the report counts where they win.

The exact step is checked against a brute force written here (every per-device order with
each kind in microbatch order, timed by its own fixed-point longest-path pass and counted
by its own memory sweep), sharing nothing with the MILP.
"""
from __future__ import annotations

import functools
import itertools

import pytest

from rpd.schedules import SCHEDULES, ScheduleNotApplicable
from rpd.schedules.core import Action, time_schedule
from rpd.schedules.metrics import peak_activations, schedule_metrics
from rpd.schedules.zb_auto import ZBAuto, exact_order, trivial_bound

DURS = [(1, 1, 1), (2, 3, 1), (1, 2, 1)]
HAND = [n for n, s in SCHEDULES.items() if n != "zb-auto" and s.semantics.synchronous
        and not s.chunked and s.replicas == 1]


def test_hand_made_set_is_the_one_chunk_synchronous_zoo():
  assert sorted(HAND) == ["1f1b-flush", "gpipe", "zb-h1", "zb-h2"]


@functools.lru_cache(maxsize=None)
def _hand(P, M, dur):
  out = {}
  for name in HAND:
    try:
      r = schedule_metrics(SCHEDULES[name], P, M, 1, dict(zip("FBW", dur)), tables=False)
    except ScheduleNotApplicable:
      continue
    out[name] = (r["makespan"], r["peak_activations"])
  return out


@functools.lru_cache(maxsize=None)
def _grid():
  from rpd.schedules.zb_auto_grid import grid
  return tuple(grid())


def test_zb_auto_never_worse_than_hand_made_at_same_memory():
  """Every cell of the grid: zb-auto is no slower than any hand-made one-chunk schedule that
  fits the limit (the seeds make this so; without them 14 cells lose,
  ``python -m rpd.schedules.zb_auto_grid --no-seeds``), and the README's counts of cells
  where other placements win hold: Chimera (two replicas, with or without forward doubling)
  36, V = 2 schedules 67."""
  from rpd.schedules.zb_auto_grid import summary
  rows = list(_grid())
  s = summary(rows)
  assert s == {"cells": 81, "loses_to_one_chunk": 0, "loses_to_replicas": 36,
               "loses_to_chunked": 67}, s


@pytest.mark.parametrize("P", [2, 4, 8])
def test_zb_auto_fits_its_limit_and_beats_each_fitting_hand_made(P):
  """The same, cell by cell, against each hand-made schedule's own metrics, and zb-auto's
  order fits the limit (peak activations from the metrics, not from the search)."""
  for k, dur, L in itertools.product((1, 2, 4), DURS, (P, 2 * P - 1, 2 * P)):
    M = k * P
    timed = ZBAuto(L).timed(P, M, 1, dict(zip("FBW", dur)))
    assert max(peak_activations(timed, "W")) <= L, (P, M, dur, L)
    for name, (span, peak) in _hand(P, M, dur).items():
      if peak <= L:
        assert timed.makespan <= span + 1e-9, (P, M, dur, L, name, timed.makespan, span)


def test_issue_cases():
  """The issue's examples: P = 4, M = 8, unit: ZB-H1 27 (zb-auto had 29); P = 8, M = 16,
  F = 2, B = 3, W = 1 at limit P: ZB-H1 124 (zb-auto had 128)."""
  assert ZBAuto(4).timed(4, 8, 1).makespan <= 27
  assert ZBAuto(8).timed(8, 16, 1, {"F": 2, "B": 3, "W": 1}).makespan <= 124


def test_limit_is_respected_below_p():
  """A limit below P (less memory than 1F1B) is met, and slower than at P."""
  for L in (1, 2, 3):
    timed = ZBAuto(L).timed(4, 8, 1)
    assert max(peak_activations(timed, "W")) <= L
  assert ZBAuto(2).timed(4, 8, 1).makespan > ZBAuto(4).timed(4, 8, 1).makespan


# ---- the exact step against a brute force -------------------------------------------------

def _orders(M):
  """Every sequence of F, B, W x M with each kind in microbatch order and B(m) after F(m),
  W(m) after B(m)."""
  def rec(nf, nb, nw, seq):
    if nw == M:
      yield tuple(seq)
      return
    if nf < M:
      yield from rec(nf + 1, nb, nw, seq + [("F", nf)])
    if nb < nf:
      yield from rec(nf, nb + 1, nw, seq + [("B", nb)])
    if nw < nb:
      yield from rec(nf, nb, nw + 1, seq + [("W", nw)])
  return list(rec(0, 0, 0, []))


def _time(orders, d, lat, r=1.0):
  """Makespan of per-device orders by fixed-point iteration of the start times (None on a
  deadlock), and the peak held memory: 1 from F start to B end, r from there to W end
  (r = 1: microbatches in flight)."""
  P = len(orders)
  start = {}
  for _ in range(200):
    changed = False
    for p, seq in enumerate(orders):
      t = 0.0
      for kind, m in seq:
        s = t
        if kind == "F" and p > 0:
          s = max(s, start.get(("F", m, p - 1), float("inf")) + d["F"] + lat)
        if kind == "B":
          s = max(s, start[("F", m, p)] + d["F"])
          if p < P - 1:
            s = max(s, start.get(("B", m, p + 1), float("inf")) + d["B"] + lat)
        if kind == "W":
          s = max(s, start[("B", m, p)] + d["B"])
        if start.get((kind, m, p)) != s:
          start[(kind, m, p)] = s
          changed = True
        t = s + d[kind]
        if t == float("inf"):
          break
    if not changed:
      break
  end = {k: v + d[k[0]] for k, v in start.items()}
  if len(start) < P * len(orders[0]) or any(v == float("inf") for v in end.values()):
    return None, None
  peak = 0
  for p in range(P):
    n = len(orders[p]) // 3
    ev = sorted([(start[("F", m, p)], 1) for m in range(n)]
                + [(end[("B", m, p)], -(1 - r)) for m in range(n)]
                + [(end[("W", m, p)], -r) for m in range(n)])
    held = 0
    for _, x in ev:
      held += x
      peak = max(peak, held)
  return max(end.values()), peak


@pytest.mark.parametrize("M,dur,lat,r", [(2, (1, 1, 1), 0.0, 1.0), (2, (2, 3, 1), 0.0, 1.0),
                                         (3, (1, 2, 1), 0.0, 1.0), (3, (2, 3, 1), 0.5, 1.0),
                                         (3, (2, 3, 1), 0.0, 0.25), (3, (1, 2, 1), 0.0, 0.5)])
def test_exact_step_equals_brute_force(M, dur, lat, r):
  """P = 2: the MILP's optimum equals the best of every order pair, at each limit (memory
  model with M_W / M_B = r), and its proved bound is at most that optimum."""
  from rpd.schedules.memory import MemoryModel
  P = 2
  d = dict(zip("FBW", map(float, dur)))
  seqs = _orders(M)
  limits = [1.0, 1.5, 2.0, 2.5, 3.0][:2 * M - 1]
  found = []
  for o0, o1 in itertools.product(seqs, seqs):
    span, peak = _time([o0, o1], d, lat, r)
    if span is not None:
      found.append((peak, span))
  for L in limits:
    best = min(span for peak, span in found if peak <= L + 1e-9)
    upper = ZBAuto(L, memory=MemoryModel("x", r)).search(P, M, d, lat)[0]
    acts, res = exact_order(P, M, d, lat, L, upper, time_limit=20, ratio=r)
    assert res.status == "optimal", res
    assert res.makespan == pytest.approx(best), (L, res, best)
    span, peak = _time([[(a.kind, a.microbatch) for a in acts[p]] for p in range(P)], d, lat, r)
    assert peak <= L + 1e-9 and span == pytest.approx(best), (L, peak, span)
    assert trivial_bound(P, M, d, lat) - 1e-9 <= res.bound <= best + 1e-6


# --- zb-auto-v: the search on ZB-V's placement (V = 2 chunks in a V) -------------------------

V_CELLS = [(P, k * P, dur) for P in (2, 4) for k in (1, 2) for dur in DURS]


@pytest.mark.parametrize("P,M,dur", V_CELLS)
def test_zb_auto_v_never_worse_than_zb_v_or_dualpipe_v(P, M, dur):
  """At ZB-V's memory (P device shares, the default limit) zb-auto-v fits and is no slower
  than ZB-V and than DualPipe-V where DualPipe-V fits (its seeds)."""
  from rpd.schedules.zb_auto_v import ZBAutoV
  d = dict(zip("FBW", map(float, dur)))
  auto = schedule_metrics(ZBAutoV(), P, M, 2, d, tables=False)
  assert auto["activation_memory"] <= P + 1e-9
  for name in ("zb-v", "dualpipe-v"):
    try:
      r = schedule_metrics(SCHEDULES[name], P, M, 2, d, tables=False)
    except ScheduleNotApplicable:
      continue
    if r["activation_memory"] <= P + 1e-9:
      assert auto["makespan"] <= r["makespan"] + 1e-9, name


def test_zb_auto_v_list_scheduler_holds_at_most_its_cap():
  """The V list scheduler's memory rule (a chunk-0 forward reserves its chunk-1 forward):
  the held chunk activations of every order it returns, counted from the order alone by the
  memory model, never exceed the cap, at every cap from 2 (one microbatch) up, and it never
  deadlocks."""
  from rpd.schedules.memory import MemoryModel
  from rpd.schedules.zb_auto_v import list_schedule_v
  for P, M, dur in [(2, 4, (1, 1, 1)), (4, 8, (2, 3, 1)), (4, 8, (1, 2, 1))]:
    d = dict(zip("FBW", map(float, dur)))
    for cap in range(2, 4 * P + 1):
      for w_first in (False, True):
        acts = list_schedule_v(P, M, d, 0.0, cap, w_first, 0.0)
        timed = time_schedule(acts, V=2, durations=d)
        assert max(MemoryModel("", 1.0).peak(timed)) <= cap, (P, M, dur, cap)


def test_zb_auto_v_search_beats_zb_v_with_more_memory():
  """With 2P device shares (P = 4, M = 16, per-chunk F = 1, B = 1.5, W = 0.5) the list
  scheduler itself (not a seed) finds 99.5 against ZB-V's 102; at ZB-V's memory it keeps
  ZB-V's 102 (the seed: the heuristic alone gets 103 there, measured)."""
  from rpd.schedules.zb_auto_v import ZBAutoV
  d = {"F": 1.0, "B": 1.5, "W": 0.5}
  span, source, *_ = ZBAutoV(8).search(4, 16, d)
  assert span == 99.5 and isinstance(source, int)
  span, source, *_ = ZBAutoV().search(4, 16, d)
  assert span == 102.0 == time_schedule(SCHEDULES["zb-v"].actions(4, 16, 2), V=2,
                                        durations=d).makespan
