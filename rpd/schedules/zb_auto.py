"""Automatic zero-bubble schedule: a bounded heuristic search over F/B/W orders under a
memory limit (after Qi et al., 2024, arXiv 2401.10241, Sec. 3.1)."""
from __future__ import annotations

import itertools

import numpy as np

from rpd.schedules.core import Action, Schedule, time_schedule
from rpd.schedules.semantics import SYNC_FLUSH


def list_schedule(P: int, M: int, dur: dict, latency: float, limit: int, w_first: bool,
                  wait_b: float) -> list[list[Action]]:
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
    if m_f < M and m_f - m_w < limit:
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


class ZBAuto(Schedule):
  """Zero Bubble's automatic scheduling idea as a small bounded search over list heuristics.

  For the durations and the latency it is timed with, every combination of ``w_first`` in
  ``{False, True}``, ``wait_b`` in ``{0, W/2, W, F}`` and in-flight limits ``L`` in
  ``{P, ..., limit}`` of :func:`list_schedule` is built and re-timed by
  :func:`~rpd.schedules.core.time_schedule` (at most ``8 P`` list schedules of ``3 M P``
  actions each); the order with the smallest makespan (then the smallest in-flight limit) is
  kept. The memory limit ``limit`` (microbatch activations held from ``F`` to the end of
  ``W``, per device) is ``2P - 1`` by default, ZB-H2's peak, so the comparison with the
  hand-made ZB-H2 is at equal memory. Synchronous, one update per batch. (The paper's
  automatic scheduler adds an ILP refinement; this search is heuristic only.)

  Lower bound: device ``P - 1`` cannot start before ``(P - 1)(F + latency)`` and has
  ``M (F + B + W)`` of work, so ``makespan >= (P - 1)(F + latency) + M (F + B + W)``.

  :meth:`actions` without durations searches at ``F = B = W = 1``; :meth:`timed` searches at
  the durations it is given.
  """

  name = "zb-auto"
  semantics = SYNC_FLUSH
  split_backward = True
  reference = "Qi et al. 2024 (Zero Bubble, automatic scheduling): heuristic search"

  def __init__(self, limit: int | None = None):
    self.limit = limit

  def memory_limit(self, P: int) -> int:
    """In-flight microbatch limit per device: :attr:`limit`, default ``2P - 1``."""
    return self.limit if self.limit is not None else 2 * P - 1

  def search(self, P: int, M: int, durations=None, latency: float = 0.0):
    """``(makespan, limit, w_first, wait_b, actions)`` of the best order found."""
    given = {"F": 1.0, "B": 1.0, "W": 1.0}
    given.update(durations or {})
    # The list scheduler plans with one duration per kind (the mean over blocks where
    # per-block durations are given); every candidate is timed with the durations given.
    dur = {k: float(np.mean(v)) for k, v in given.items()}
    top = max(1, self.memory_limit(P))
    best = None
    for L, w_first, wait_b in itertools.product(
        range(min(P, top), top + 1), (False, True),
        sorted({0.0, dur["W"] / 2, dur["W"], dur["F"]})):
      acts = list_schedule(P, M, dur, latency, L, w_first, wait_b)
      span = time_schedule(acts, durations=given, latency=latency).makespan
      key = (round(span, 9), L)
      if best is None or key < best[0]:
        best = (key, L, w_first, wait_b, acts)
    (span, _), L, w_first, wait_b, acts = best
    return span, L, w_first, wait_b, acts

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """The best order at unit durations."""
    self.check(P, M, V)
    return self.search(P, M)[-1]

  def timed(self, P: int, M: int, V: int = 1, durations=None, latency: float = 0.0):
    """Search at ``durations`` and ``latency``, then time the best order."""
    self.check(P, M, V)
    acts = self.search(P, M, durations, latency)[-1]
    return time_schedule(acts, V=V, durations=durations, latency=latency)
