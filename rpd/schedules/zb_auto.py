"""Automatic zero-bubble schedule under a memory limit (after Qi et al., 2024, arXiv
2401.10241, Sec. 3.1): a heuristic search seeded with the hand-made schedules, then an exact
step (a MILP solved by HiGHS through :func:`scipy.optimize.milp`) for small ``P`` and ``M``."""
from __future__ import annotations

import dataclasses
import functools
import itertools

import numpy as np

from rpd.schedules.core import Action, Schedule, ScheduleNotApplicable, time_schedule
from rpd.schedules.semantics import SYNC_FLUSH

#: the heuristic search builds up to ``8 P`` list schedules of ``3 P M`` actions with ``O(P)``
#: work each, about ``24 P^3 M`` steps; it is refused beyond ``P^3 M > MAX_SEARCH_P3M``
#: (measured, CPU on the loaded 2-core machine at the default limit ``2P - 1``: 2 s at
#: ``P = 8, M = 256``, 13.5 s at ``P = 32, M = 16``, 68 s at ``P = 64, M = 4``).
MAX_SEARCH_P3M = 2**17
#: the exact step runs when its MILP has at most this many order variables
#: (``3 P M (M - 1) / 2``): ``P = 4, M = 16`` (1440) and ``P = 8, M = 8`` (672) qualify.
MAX_EXACT_BINARIES = 1500


def list_schedule(P: int, M: int, dur: dict, latency: float, limit: float, w_first: bool,
                  wait_b: float, ratio: float = 1.0) -> list[list[Action]]:
  """One event-driven list schedule with split backwards (one block per device).

  The device with the smallest free time ``t`` decides (ties: lower device): the next ``B``
  if it is ready by ``t + wait_b`` (the device then waits for it); else the next ``F`` if it
  is ready by ``t`` and fewer than ``limit`` microbatches are held (from the start of their
  ``F`` to the end of their ``W``), or the oldest pending ``W`` (first if ``w_first``); else
  a pending ``W`` fills the wait; else the device idles until its next ``B`` or ``F`` is
  ready. A device whose next ``B`` and ``F`` both wait on actions not yet placed sleeps until
  another device places one. ``F``, ``B`` and ``W`` each run in microbatch order. Every step
  places an action or moves a clock forward, so the loop ends after ``O(P M)`` steps per
  placed action at most (a deadlock, impossible for ``limit >= 1``, raises).

  Args:
    P, M: devices (= blocks) and microbatches.
    dur: ``{"F", "B", "W"}`` durations.
    latency: point-to-point latency.
    limit: in-flight microbatches per device (``>= 1``).
    w_first: a pending ``W`` goes before a ready ``F`` when no ``B`` is ready.
    wait_b: how long a device idles for a ``B`` about to be ready rather than start other work.
    ratio: memory model (:mod:`rpd.schedules.memory`): a microbatch holds ``1`` from ``F`` to
      the end of ``B`` and ``ratio`` from there to the end of ``W``; an ``F`` starts only if
      the held memory plus ``1`` is at most ``limit`` (``ratio = 1``: at most ``limit``
      microbatches in flight).

  Returns:
    ``actions[p]``.
  """
  inf = float("inf")
  end_f: dict = {}   # (m, p) -> end
  end_b: dict = {}
  nf, nb, nw = [0] * P, [0] * P, [0] * P
  free = [0.0] * P
  asleep = [False] * P
  acts: list[list[Action]] = [[] for _ in range(P)]
  done = [M == 0] * P
  while not all(done):
    awake = [q for q in range(P) if not done[q] and not asleep[q]]
    if not awake:
      raise ValueError(f"automatic schedule deadlocks (limit={limit})")
    p = min(awake, key=lambda q: (free[q], q))
    t = free[p]
    m_b, m_f, m_w = nb[p], nf[p], nw[p]
    rb = inf
    if m_b < m_f:
      rb = end_f[(m_b, p)]
      if p < P - 1:
        rb = max(rb, end_b.get((m_b, p + 1), inf) + latency)
    rf = inf
    if m_f < M and (m_f - m_b) + ratio * (m_b - m_w) + 1 <= limit + 1e-9:
      rf = 0.0 if p == 0 else end_f.get((m_f, p - 1), inf) + latency
    has_w = m_w < m_b
    if rb <= t + wait_b:
      kind, start = "B", max(t, rb)
    elif has_w and (w_first or rf > t):
      kind, start = "W", t
    elif rf <= t:
      kind, start = "F", t
    elif min(rb, rf) < inf:
      free[p] = min(rb, rf)
      continue
    else:
      asleep[p] = True
      continue
    m = {"F": m_f, "B": m_b, "W": m_w}[kind]
    free[p] = start + dur[kind]
    if kind == "F":
      end_f[(m, p)] = free[p]
      nf[p] += 1
    elif kind == "B":
      end_b[(m, p)] = free[p]
      nb[p] += 1
    else:
      nw[p] += 1
    acts[p].append(Action(p, kind, m))
    done[p] = nw[p] == M
    for q in range(P):
      if asleep[q]:
        asleep[q] = False
  return acts


@dataclasses.dataclass(frozen=True)
class ExactResult:
  """What the exact step proved.

  Attributes:
    status: ``"optimal"``, ``"time limit"`` or ``"skipped: <reason>"``.
    makespan: the best makespan the solver found (``None`` if none).
    bound: the lower bound it proved (the largest of the solver's dual bound and
      :func:`trivial_bound`).
    heuristic: the makespan of the seeded heuristic search before the exact step.
    binaries: number of order variables of the MILP.
    seconds: solver wall time.
  """

  status: str
  makespan: float | None
  bound: float
  heuristic: float
  binaries: int = 0
  seconds: float = 0.0


def _per_block(given: dict, P: int) -> dict:
  return {k: [float(x) for x in np.broadcast_to(np.asarray(v, np.float64), (P,))]
          for k, v in given.items()}


def trivial_bound(P: int, M: int, given: dict, latency: float) -> float:
  """``max_p (sum_{q < p} (F_q + latency) + M (F_p + B_p + W_p))``: device ``p`` starts no
  earlier than the first forward reaches it and then has ``M (F_p + B_p + W_p)`` of work."""
  d = _per_block(given, P)
  return max(sum(d["F"][q] + latency for q in range(p)) + M * (d["F"][p] + d["B"][p] + d["W"][p])
             for p in range(P))


def exact_order(P: int, M: int, given: dict, latency: float, limit: float, upper: float,
                time_limit: float = 2.0, ratio: float = 1.0):
  """The makespan-optimal split-backward order of ``P`` devices (one block each) and ``M``
  microbatches under the in-flight limit, by a MILP (HiGHS, :func:`scipy.optimize.milp`).

  Variables: the start ``s_a >= 0`` of each action ``a`` in ``{F, B, W} x M x P``, the
  makespan ``C``, and for each device ``p`` and microbatches ``m' < m`` three order binaries
  ``y`` (1: the later microbatch's ``F`` / ``B`` / ``F`` runs before the earlier one's
  ``B`` / ``W`` / ``W``). ``F``, ``B`` and ``W`` each run in microbatch order on a device
  (as in the heuristic and the hand-made schedules), so every other pair is ordered by a
  dependency. Constraints: the dependencies of :mod:`rpd.schedules.core` with the latency
  across devices; one action at a time (big-``M`` disjunctions with ``upper``); ``C >= s_a +
  d_a``; memory (:mod:`rpd.schedules.memory`, ``ratio`` = ``M_W / M_B``): at the start of
  ``F(m)`` on ``p``, ``m`` itself, each earlier ``m'`` whose ``B`` has not run (``1``) and
  each whose ``W`` has not run (``ratio``) hold at most ``limit``:
  ``1 + sum_{m' < m} ((1 - ratio) y^{FB}_{m m'} + ratio y^{FW}_{m m'}) <= limit``
  (``ratio = 1``: at most ``limit`` microbatches in flight). Objective: ``min C``.

  Args:
    P, M: devices and microbatches.
    given: ``{"F", "B", "W"}`` durations (scalars or per-block sequences).
    latency: point-to-point latency.
    limit: in-flight microbatches per device (until the end of ``W``).
    upper: a makespan known to be achievable (the heuristic's): the big-``M`` constant and
      an upper bound on ``C``.
    time_limit: seconds for HiGHS.

  Returns:
    ``(actions or None, ExactResult)``; ``actions`` are the per-device orders of the best
    solution (sorted by start time), ``None`` if the solver found none within the limit.
  """
  import time

  from scipy.optimize import Bounds, LinearConstraint, milp
  from scipy.sparse import lil_matrix

  d = _per_block(given, P)
  n_s = 3 * M * P
  sid = lambda k, m, p: ("FBW".index(k) * M + m) * P + p
  pairs = [(p, m, mp, t) for p in range(P) for m in range(M) for mp in range(m)
           for t in ("FB", "BW", "FW")]  # t = (kind of the later m, kind of the earlier m')
  nb = len(pairs)
  iC = n_s
  nvar = n_s + 1 + nb
  rows, lo, hi = [], [], []

  def add(coef: dict, lb: float, ub: float = np.inf):
    rows.append(coef)
    lo.append(lb)
    hi.append(ub)

  for p in range(P):
    for m in range(M):
      f, b, w = sid("F", m, p), sid("B", m, p), sid("W", m, p)
      if p > 0:
        add({f: 1, sid("F", m, p - 1): -1}, d["F"][p - 1] + latency)
      add({b: 1, f: -1}, d["F"][p])
      if p < P - 1:
        add({b: 1, sid("B", m, p + 1): -1}, d["B"][p + 1] + latency)
      add({w: 1, b: -1}, d["B"][p])
      add({iC: 1, w: -1}, d["W"][p])
      if m > 0:
        for k in "FBW":
          add({sid(k, m, p): 1, sid(k, m - 1, p): -1}, d[k][p])
  head, tail = _heads_tails(P, M, d, latency)
  lb = np.zeros(nvar)
  ub = np.full(nvar, float(upper))
  for k in "FBW":
    for m in range(M):
      for p in range(P):
        lb[sid(k, m, p)] = head[k, m, p]
        ub[sid(k, m, p)] = upper - tail[k, m, p]
  ub[n_s + 1:] = 1
  for i, (p, m, mp, t) in enumerate(pairs):
    a, e = sid(t[0], m, p), sid(t[1], mp, p)   # later microbatch's action a, earlier's e
    da, de = d[t[0]][p], d[t[1]][p]
    y = n_s + 1 + i
    if ub[a] + da <= lb[e] + 1e-9:
      lb[y] = 1   # a ends before e can start: a first
    elif ub[e] + de <= lb[a] + 1e-9:
      ub[y] = 0
    # y = 1: a before e (s_e >= s_a + d_a); y = 0: e before a (s_a >= s_e + d_e).
    big1 = max(0.0, da + ub[a] - lb[e])
    big0 = max(0.0, de + ub[e] - lb[a])
    add({e: 1, a: -1, y: -big1}, da - big1)
    add({a: 1, e: -1, y: big0}, de)
  held: dict = {}
  for i, (p, m, mp, t) in enumerate(pairs):
    w = {"FW": ratio, "FB": 1.0 - ratio}.get(t, 0.0)
    if w:
      held.setdefault((p, m), {})[n_s + 1 + i] = w
  for coef in held.values():  # memory at the start of F(m), beyond m's own 1
    add(coef, -np.inf, limit - 1 + 1e-9)
  A = lil_matrix((len(rows), nvar))
  for r, coef in enumerate(rows):
    for j, v in coef.items():
      A[r, j] += v
  c = np.zeros(nvar)
  c[iC] = 1.0
  integrality = np.zeros(nvar)
  integrality[n_s + 1:] = 1
  floor = trivial_bound(P, M, given, latency)
  lb[iC] = floor
  t0 = time.perf_counter()
  res = milp(c, integrality=integrality, bounds=Bounds(lb, ub),
             constraints=LinearConstraint(A.tocsr(), lo, hi),
             options={"time_limit": float(time_limit), "disp": False})
  secs = time.perf_counter() - t0
  dual = getattr(res, "mip_dual_bound", None)
  bound = max(floor, float(dual) if dual is not None and np.isfinite(dual) else floor)
  if res.x is None:
    return None, ExactResult("time limit", None, bound, upper, nb, secs)
  x = res.x
  acts = []
  for p in range(P):
    keyed = sorted((x[sid(k, m, p)], "FBW".index(k), m) for k in "FBW" for m in range(M))
    acts.append([Action(p, "FBW"[k], m) for _, k, m in keyed])
  status = "optimal" if res.status == 0 else "time limit"
  if status == "optimal":
    bound = max(bound, float(res.fun) - 1e-6 * max(1.0, abs(res.fun)))
  return acts, ExactResult(status, float(res.fun), bound, upper, nb, secs)


def _heads_tails(P: int, M: int, d: dict, latency: float):
  """Earliest start (``head``) and least time from start to the end of the run (``tail``,
  own duration included) of every action ``(kind, m, p)``, from the dependencies and the
  microbatch order of each kind on a device (longest paths in the precedence graph)."""
  head, tail = {}, {}
  for m in range(M):
    for p in range(P):
      head["F", m, p] = max(head["F", m, p - 1] + d["F"][p - 1] + latency if p else 0.0,
                            head["F", m - 1, p] + d["F"][p] if m else 0.0)
  for m in range(M):
    for p in reversed(range(P)):
      head["B", m, p] = max(head["F", m, p] + d["F"][p],
                            head["B", m, p + 1] + d["B"][p + 1] + latency if p < P - 1 else 0.0,
                            head["B", m - 1, p] + d["B"][p] if m else 0.0)
    for p in range(P):
      head["W", m, p] = max(head["B", m, p] + d["B"][p],
                            head["W", m - 1, p] + d["W"][p] if m else 0.0)
  for m in reversed(range(M)):
    for p in range(P):
      tail["W", m, p] = d["W"][p] + (tail["W", m + 1, p] if m < M - 1 else 0.0)
    for p in range(P):
      tail["B", m, p] = d["B"][p] + max(tail["W", m, p],
                                        tail["B", m + 1, p] if m < M - 1 else 0.0,
                                        tail["B", m, p - 1] + latency if p else 0.0)
  for m in reversed(range(M)):
    for p in reversed(range(P)):
      tail["F", m, p] = d["F"][p] + max(tail["B", m, p],
                                        tail["F", m + 1, p] if m < M - 1 else 0.0,
                                        tail["F", m, p + 1] + latency if p < P - 1 else 0.0)
  return head, tail


def _key(durations: dict) -> tuple:
  """A hashable form of per-kind durations (scalars or per-block sequences)."""
  return tuple(sorted((k, tuple(np.atleast_1d(np.asarray(v, np.float64)).tolist()))
                      for k, v in durations.items()))


def _unkey(key: tuple) -> dict:
  return {k: (v[0] if len(v) == 1 else list(v)) for k, v in key}


@functools.lru_cache(maxsize=512)
def _list_schedule_cached(P, M, dur_key, latency, L, w_first, wait_b, ratio=1.0):
  """:func:`list_schedule`, memoized (the searches at neighbouring limits share candidates)."""
  return tuple(tuple(a) for a in list_schedule(P, M, _unkey(dur_key), latency, L, w_first,
                                               wait_b, ratio))


@functools.lru_cache(maxsize=512)
def _span_and_peak(acts: tuple, given_key: tuple, latency: float,
                   ratio: float = 1.0) -> tuple[float, float]:
  """Makespan and :func:`in_flight_peak` of an order timed with the given durations."""
  timed = time_schedule(acts, durations=_unkey(given_key), latency=latency)
  return timed.makespan, in_flight_peak(timed, ratio)


def split_backward_order(acts: list[list[Action]]) -> list[list[Action]]:
  """An unsplit order (``B`` = the whole backward) as a split one: ``W`` right after ``B``.

  The split order finishes no later (each ``B`` ends earlier, so the next device's backward
  starts earlier) and holds the same activations (released at the end of ``W`` instead of
  the same instant at the end of the unsplit ``B``).
  """
  if any(a.kind == "W" for p in acts for a in p):
    return [list(p) for p in acts]
  return [[x for a in p for x in ((a, Action(a.stage, "W", a.microbatch)) if a.kind == "B"
                                  else (a,))] for p in acts]


def in_flight_peak(timed, ratio: float = 1.0) -> float:
  """Largest activation memory a device holds under the memory model with ``M_W / M_B =
  ratio`` (:mod:`rpd.schedules.memory`; ``ratio = 1``: microbatches from the start of ``F``
  to the end of ``W``, rpd's model)."""
  from rpd.schedules.memory import MemoryModel
  return max(MemoryModel("", ratio).peak(timed))


class ZBAuto(Schedule):


  """Zero Bubble's automatic scheduling: a seeded heuristic search, then an exact step.

  For the durations and the latency it is timed with, the candidates are (1) every
  combination of ``w_first`` in ``{False, True}``, ``wait_b`` in ``{0, W/2, W, F}`` and
  in-flight limits ``L`` in ``{min(P, limit), ..., limit}`` of :func:`list_schedule` (at most
  ``8 P`` list schedules of ``3 M P`` actions each) and (2) the seeds: the hand-made
  one-chunk synchronous schedules ZB-H1, ZB-H2, 1F1B and GPipe (unsplit orders as
  :func:`split_backward_order`). Every candidate is re-timed by
  :func:`~rpd.schedules.core.time_schedule`; those holding more than ``limit`` microbatches
  (:func:`in_flight_peak`) are dropped, and the one with the smallest makespan (then the
  smallest peak) is kept. So zb-auto is never slower than a hand-made schedule that fits the
  same limit. (3) If ``exact`` and the MILP of :func:`exact_order` is small
  (``<= MAX_EXACT_BINARIES`` order variables), HiGHS improves the order within
  ``time_limit`` seconds and proves a lower bound (:attr:`last_exact`).

  The memory limit ``limit`` (microbatch activations held from ``F`` to the end of ``W``, per
  device) is ``2P - 1`` by default, ZB-H2's peak. Synchronous, one update per batch.

  Lower bound: device ``P - 1`` cannot start before ``(P - 1)(F + latency)`` and has
  ``M (F + B + W)`` of work, so ``makespan >= (P - 1)(F + latency) + M (F + B + W)``.

  :meth:`actions` without durations searches at ``F = B = W = 1``; :meth:`timed` searches at
  the durations it is given.
  """

  name = "zb-auto"
  semantics = SYNC_FLUSH
  split_backward = True
  reference = "Qi et al. 2024 (Zero Bubble, automatic scheduling): heuristic search"
  #: chunks per device the search places (the V-shaped variant: 2); ``V`` defaults to it.
  search_V = 1

  def __init__(self, limit: float | None = None, exact: bool = False, time_limit: float = 2.0,
               memory=None):
    from rpd.schedules.memory import RPD
    self.limit = limit
    self.memory = memory or RPD
    self.exact = exact
    self.time_limit = time_limit
    self.last_exact: ExactResult | None = None
    self._cache: dict = {}

  def check(self, P: int, M: int, V: int | None = None) -> None:
    """Also refuse a heuristic search beyond ``P^3 M > MAX_SEARCH_P3M`` (it would take
    minutes) and a limit below one microbatch. ``V`` defaults to :attr:`search_V`."""
    super().check(P, M, self.search_V if V is None else V)
    if P ** 3 * M > MAX_SEARCH_P3M:
      raise ScheduleNotApplicable(f"the search costs about 24 P^3 M steps; needs P^3 M <= "
                                  f"{MAX_SEARCH_P3M}, got P={P}, M={M}")
    if self.memory_limit(P) < 1:
      raise ScheduleNotApplicable(f"in-flight limit {self.memory_limit(P)} < 1 microbatch")

  def memory_limit(self, P: int) -> float:
    """In-flight microbatch limit per device: :attr:`limit`, default ``2P - 1``."""
    return self.limit if self.limit is not None else 2 * P - 1

  def search(self, P: int, M: int, durations=None, latency: float = 0.0):
    """``(makespan, source, w_first, wait_b, actions)`` of the best order found; ``source``
    is the list scheduler's in-flight limit, a seed's name or ``"exact"``."""
    given = {"F": 1.0, "B": 1.0, "W": 1.0}
    given.update(durations or {})
    key = (P, M, repr(sorted((k, np.asarray(v).tolist()) for k, v in given.items())),
           float(latency), self.exact, self.time_limit, self.memory.ratio)
    if key in self._cache:
      found, self.last_exact = self._cache[key]
      return found
    found = self._search(P, M, given, latency)
    if len(self._cache) >= 64:
      self._cache.clear()
    self._cache[key] = (found, self.last_exact)
    return found

  def _search(self, P: int, M: int, given: dict, latency: float):
    """:meth:`search` without its cache."""
    # The list scheduler plans with one duration per kind (the mean over blocks where
    # per-block durations are given); every candidate is timed with the durations given.
    dur = {k: float(np.mean(v)) for k, v in given.items()}
    top = max(1, self.memory_limit(P))
    r = self.memory.ratio
    best = None

    given_key = _key(given)

    def consider(acts, L, w_first, wait_b):
      nonlocal best
      acts = tuple(tuple(a) for a in acts)
      span, peak = _span_and_peak(acts, given_key, latency, r)
      if peak > top + 1e-9:
        return
      key = (round(span, 9), peak)
      if best is None or key < best[0]:
        best = (key, L, w_first, wait_b, [list(a) for a in acts])

    limits = sorted({float(top)} | {float(L) for L in range(min(P, int(top)), int(top) + 1)})
    for L, w_first, wait_b in itertools.product(
        limits, (False, True), sorted({0.0, dur["W"] / 2, dur["W"], dur["F"]})):
      consider(_list_schedule_cached(P, M, _key(dur), latency, L, w_first, wait_b, r), L,
               w_first, wait_b)
    from rpd.schedules.gpipe import GPipe
    from rpd.schedules.onef1b_flush import OneFOneBFlush
    from rpd.schedules.zb_h1 import ZBH1
    from rpd.schedules.zb_h2 import ZBH2
    for seed in (ZBH1(), ZBH2(), OneFOneBFlush(), GPipe()):
      try:
        acts = split_backward_order(seed.actions(P, M, 1))
      except ScheduleNotApplicable:
        continue
      consider(acts, seed.name, None, None)
    if best is None:
      raise ScheduleNotApplicable(f"no order found within in-flight limit {top}")
    (span, _), L, w_first, wait_b, acts = best
    self.last_exact = None
    if self.exact:
      nb = 3 * P * M * (M - 1) // 2
      floor = trivial_bound(P, M, given, latency)
      if span <= floor + 1e-9:
        self.last_exact = ExactResult("optimal (the search meets the lower bound)", span, floor,
                                      span, nb)
      elif nb > MAX_EXACT_BINARIES:
        self.last_exact = ExactResult(f"skipped: {nb} order variables > {MAX_EXACT_BINARIES}",
                                      None, trivial_bound(P, M, given, latency), span, nb)
      else:
        found, result = exact_order(P, M, given, latency, top, span, self.time_limit, r)
        self.last_exact = result
        if found is not None:
          timed = time_schedule(found, durations=given, latency=latency)
          if timed.makespan < span - 1e-9 and in_flight_peak(timed, r) <= top + 1e-9:
            span, L, w_first, wait_b, acts = timed.makespan, "exact", None, None, found
    return span, L, w_first, wait_b, acts

  def actions(self, P: int, M: int, V: int | None = None) -> list[list[Action]]:
    """The best order at unit durations (``V`` defaults to :attr:`search_V`)."""
    self.check(P, M, V)
    return self.search(P, M)[-1]

  def timed(self, P: int, M: int, V: int | None = None, durations=None, latency: float = 0.0):
    """Search at ``durations`` and ``latency``, then time the best order."""
    self.check(P, M, V)
    acts = self.search(P, M, durations, latency)[-1]
    return time_schedule(acts, V=self.search_V if V is None else V, durations=durations,
                         latency=latency)
