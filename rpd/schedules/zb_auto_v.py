"""Automatic zero-bubble schedule with two chunks per device in a V (ZB-V's placement): the
list-scheduling search of :mod:`rpd.schedules.zb_auto` on ``2P`` blocks, seeded with the
hand-made V-shaped schedules (ZB-V, DualPipe-V)."""
from __future__ import annotations

import functools
import itertools

from rpd.schedules.core import Action, ScheduleNotApplicable
from rpd.schedules.zb_auto import MAX_SEARCH_P3M, ZBAuto, _key, _span_and_peak, _unkey
from rpd.schedules.zb_v import v_action


def v_device(P: int, b: int) -> tuple[int, int]:
  """``(device, chunk)`` of block ``b`` in the V: blocks ``0..P-1`` go down the devices
  (chunk 0), blocks ``P..2P-1`` come back up (chunk 1)."""
  return (b, 0) if b < P else (2 * P - 1 - b, 1)


def list_schedule_v(P: int, M: int, dur: dict, latency: float, cap: int, w_first: bool,
                    wait_b: float, ratio: float = 1.0) -> list[list[Action]]:
  """One event-driven list schedule on the V (``2P`` blocks, split backwards).

  As :func:`rpd.schedules.zb_auto.list_schedule`, per device with two blocks: the device
  with the smallest free time ``t`` runs the ``B`` that is ready first if it is ready by
  ``t + wait_b`` (of its two blocks, the later one on ties); else the oldest pending ``W``
  if ``w_first`` or no ``F`` is ready; else a ready ``F``, chunk 1 first (it is already
  paid for, see below), then chunk 0; else it idles until the next ready time or sleeps
  until another device places an action. Each block runs ``F`` and ``B`` in microbatch order,
  ``W`` in the order of the ``B``s.

  Memory, in chunk activations (one is half a device share): a chunk's activation is held
  ``1`` from its ``F`` to its ``B`` and ``ratio`` to its ``W``; a chunk-0 ``F`` also reserves
  one unit for the same microbatch's chunk-1 ``F`` on this device, and starts only if held +
  reserved + 2 <= ``cap``; a chunk-1 ``F`` uses its reservation (so no device waits for
  memory that only its own later forward frees: no deadlock). The held memory of the order
  is therefore at most ``cap`` units at any time.

  Returns:
    ``actions[p]`` (V-shaped actions, :func:`~rpd.schedules.zb_v.v_action`).
  """
  inf = float("inf")
  S = 2 * P
  blocks = [(p, S - 1 - p) for p in range(P)]  # chunk 0, chunk 1
  end_f: dict = {}
  end_b: dict = {}
  nf = [0] * S
  nb = [0] * S
  pending: list[list[tuple[int, int]]] = [[] for _ in range(P)]
  free = [0.0] * P
  asleep = [False] * P
  held = [0.0] * P
  reserved = [0] * P
  done_w = [0] * P
  acts: list[list[Action]] = [[] for _ in range(P)]

  def lat(b0: int, b1: int) -> float:
    return latency if v_device(P, b0)[0] != v_device(P, b1)[0] else 0.0

  while min(done_w) < 2 * M:
    awake = [q for q in range(P) if done_w[q] < 2 * M and not asleep[q]]
    if not awake:
      raise ValueError(f"automatic V schedule deadlocks (cap={cap})")
    p = min(awake, key=lambda q: (free[q], q))
    t = free[p]
    best_b = None
    for c in (1, 0):
      b = blocks[p][c]
      m = nb[b]
      if m < nf[b]:
        r = end_f[(m, b)]
        if b < S - 1:
          r = max(r, end_b.get((m, b + 1), inf) + lat(b + 1, b))
        if best_b is None or r < best_b[0]:
          best_b = (r, b, m)
    rb = best_b[0] if best_b else inf
    ready_f = []
    for c in (1, 0):
      b = blocks[p][c]
      m = nf[b]
      if m >= M:
        continue
      if c == 0 and held[p] + reserved[p] + 2 > cap + 1e-9:
        continue
      r = 0.0 if b == 0 else end_f.get((m, b - 1), inf) + lat(b - 1, b)
      ready_f.append((r, c, b, m))
    rf = min((x[0] for x in ready_f), default=inf)
    if rb <= t + wait_b:
      _, b, m = best_b
      start = max(t, rb)
      free[p] = start + dur["B"]
      end_b[(m, b)] = free[p]
      nb[b] += 1
      held[p] -= 1.0 - ratio
      pending[p].append((m, b))
      kind = "B"
    elif pending[p] and (w_first or rf > t):
      m, b = pending[p].pop(0)
      free[p] = t + dur["W"]
      held[p] -= ratio
      done_w[p] += 1
      kind = "W"
    elif rf <= t:
      _, c, b, m = min(x for x in ready_f if x[0] <= t)
      free[p] = t + dur["F"]
      end_f[(m, b)] = free[p]
      nf[b] += 1
      held[p] += 1.0
      reserved[p] += 1 if c == 0 else -1
      kind = "F"
    elif min(rb, rf) < inf:
      free[p] = min(rb, rf)
      continue
    else:
      asleep[p] = True
      continue
    acts[p].append(v_action(P, p, kind, m, v_device(P, b)[1]))
    for q in range(P):
      asleep[q] = False
  return acts


@functools.lru_cache(maxsize=256)
def _list_schedule_v_cached(P, M, dur_key, latency, cap, w_first, wait_b, ratio=1.0):
  """:func:`list_schedule_v`, memoized."""
  return tuple(tuple(a) for a in list_schedule_v(P, M, _unkey(dur_key), latency, cap,
                                                 w_first, wait_b, ratio))


class ZBAutoV(ZBAuto):
  """zb-auto on ZB-V's placement (``V = 2`` chunks in a V, ``2P`` blocks).

  Candidates: :func:`list_schedule_v` for ``w_first`` in ``{False, True}``, ``wait_b`` in
  ``{0, W/2, W, F}`` (chunk durations) and caps ``{2L - P, ..., 2L}`` chunk activations
  (``L`` = the limit in device shares, default ``P``, ZB-V's memory), and the seeds ZB-V and
  DualPipe-V; each is timed with the given durations, kept only if its activation memory
  (peak held chunk activations / 2, device shares, under the memory model) is at most
  ``L``, and the fastest (then the smallest) is kept. No exact step. Durations are per
  chunk (the CLI's per-device ``F, B, W`` halved, as for every chunked schedule).
  """

  name = "zb-auto-v"
  chunked = True
  search_V = 2
  #: the hand-made V-shaped schedules the search starts from (registry names).
  seeds: tuple = ("zb-v", "dualpipe-v")
  reference = "Qi et al. 2024 (Zero Bubble, automatic scheduling) on ZB-V's placement"

  def check(self, P: int, M: int, V: int | None = None) -> None:
    """``V = 2``; the search's size limit; a limit of at least one microbatch."""
    if V is not None and V != 2:
      raise ScheduleNotApplicable(f"{self.name} holds exactly V = 2 chunks per device, got V={V}")
    super().check(P, M, V)

  def memory_limit(self, P: int) -> float:
    """Activation memory per device in device shares: :attr:`limit`, default ``P`` (ZB-V's)."""
    return self.limit if self.limit is not None else P

  def _search(self, P: int, M: int, given: dict, latency: float):
    import numpy as np
    dur = {k: float(np.mean(v)) for k, v in given.items()}
    top = self.memory_limit(P)
    r = self.memory.ratio
    given_key = _key(given)
    best = None

    def consider(acts, cap, w_first, wait_b):
      nonlocal best
      acts = tuple(tuple(a) for a in acts)
      span, peak = _span_and_peak(acts, given_key, latency, r)
      if peak / 2 > top + 1e-9:
        return
      key = (round(span, 9), peak)
      if best is None or key < best[0]:
        best = (key, cap, w_first, wait_b, [list(a) for a in acts])

    hi = int(np.floor(2 * top + 1e-9))
    for cap, w_first, wait_b in itertools.product(
        range(max(2, hi - P), hi + 1), (False, True),
        sorted({0.0, dur["W"] / 2, dur["W"], dur["F"]})):
      consider(_list_schedule_v_cached(P, M, _key(dur), latency, cap, w_first, wait_b, r),
               cap, w_first, wait_b)
    from rpd.schedules import get_schedule
    for seed in map(get_schedule, self.seeds):
      try:
        acts = seed.actions(P, M, 2)
      except ScheduleNotApplicable:
        continue
      consider(acts, seed.name, None, None)
    if best is None:
      raise ScheduleNotApplicable(f"no V order found within activation memory {top}")
    (span, _), cap, w_first, wait_b, acts = best
    self.last_exact = None
    return span, cap, w_first, wait_b, acts
