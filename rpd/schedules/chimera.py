"""Chimera: bidirectional pipelines (Li and Hoefler, SC 2021, arXiv 2107.06925)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule, ScheduleNotApplicable, time_schedule
from rpd.schedules.semantics import SYNC_FLUSH


#: :func:`chimera_order` scans every pending action per step, about ``(2 P M)^2`` steps
#: (measured on the loaded 2-core CPU: 28.6 s of CPU at ``P = M = 64``); larger runs are
#: refused.
MAX_CHIMERA_PM = 2048


def chimera_block(P: int, p: int, direction: int) -> int:
  """Model block run by device ``p``: ``p`` in the down pipeline, ``P - 1 - p`` in the up one."""
  return p if direction == 0 else P - 1 - p


def chimera_order(P: int, M: int, t_f: float = 1.0,
                  t_b: float = 1.0) -> list[list[tuple[str, int, int]]]:
  """Per-device order ``(kind, microbatch, direction)`` of Chimera with ``M`` microbatches.

  Microbatch ``m`` goes down if ``m mod P < P/2``, else up (each basic unit of ``P``
  microbatches sends half each way). The order comes from non-delay list scheduling with the
  paper's unit times (``F = B = 1``): repeatedly, the action that can start earliest on its
  device runs, ties broken by backward first, then the deeper block of its pipeline, then
  the lower microbatch; a forward waits while its device holds ``P`` microbatches'
  activations (Chimera's activation bound ``D M_a``). With ``M = kP`` this gives
  makespan ``2M + P - 2`` at unit times, the paper's bubble (tested for ``P <= 8``).
  ``t_f`` and ``t_b`` are the forward and backward durations the list scheduler plans with.
  """
  direction = [(m % P) // (P // 2) for m in range(M)]
  return bidirectional_list_order(P, [[m] for m in range(M)], direction, t_f, t_b, cap=P,
                                  name="chimera")[0]


def bidirectional_list_order(P: int, units: list[list[int]], direction: list[int],
                             t_fwd: float, t_b: float, cap: int, name: str,
                             ) -> tuple[list[list[tuple[str, int, int]]], float]:
  """Non-delay list scheduling of Chimera's two pipelines (shared by its variants).

  Forward unit ``u`` carries microbatches ``units[u]`` in direction ``direction[u]`` (0 down,
  1 up): ``F(u, b)`` lasts ``t_fwd`` and needs ``F(u, b - 1)``; ``B(m, b)`` lasts ``t_b`` and
  needs the forward of ``m``'s unit at ``b`` and ``B(m, b + 1)``. Repeatedly, the action that
  can start earliest on its device runs, ties broken by backward first, then the deeper block
  of its pipeline, then the lower index; a forward waits until its device holds at most
  ``cap - len(units[u])`` microbatches' activations (released at the end of each backward).

  Returns:
    ``(order, makespan)``: ``order[p]`` lists ``(kind, microbatch, direction)``, a unit's
    forward written as its microbatches' forwards back to back.

  Raises:
    ValueError: if every ready forward is held back by the activation cap.
  """
  unit_of = {m: u for u, ms in enumerate(units) for m in ms}
  dev = {}
  for u, ms in enumerate(units):
    for b in range(P):
      dev[("F", u, b)] = chimera_block(P, b, direction[u])
      for m in ms:
        dev[("B", m, b)] = chimera_block(P, b, direction[u])
  end: dict = {}
  free = [0.0] * P
  todo = {p: {k for k, d in dev.items() if d == p} for p in range(P)}
  held: list[dict] = [{} for _ in range(P)]  # microbatch -> release time (None: not yet)
  order: list[list[tuple[str, int, int]]] = [[] for _ in range(P)]
  never = float("inf")

  def deps(k):
    kind, i, b = k
    if kind == "F":
      return [("F", i, b - 1)] if b > 0 else []
    return [("F", unit_of[i], b)] + ([("B", i, b + 1)] if b < P - 1 else [])

  while any(todo.values()):
    best = None
    for p in range(P):
      for k in todo[p]:
        ds = deps(k)
        if not all(d in end for d in ds):
          continue
        t = max([free[p]] + [end[d] for d in ds])
        if k[0] == "F":
          room = cap - len(units[k[1]])
          rel = sorted(never if e is None else e for e in held[p].values())
          rel = [e for e in rel if e > t]
          if len(rel) > room:
            t = rel[len(rel) - room - 1]
            if t == never:
              continue
        key = (t, k[0] != "B", -k[2], k[1])
        if best is None or key < best[0]:
          best = (key, p, k)
    if best is None:  # every ready forward is held back by the activation bound
      raise ValueError(f"{name} list scheduler stalls at F={t_fwd}, B={t_b}")
    (t, *_), p, k = best
    end[k] = free[p] = t + (t_fwd if k[0] == "F" else t_b)
    todo[p].discard(k)
    if k[0] == "F":
      for m in units[k[1]]:
        held[p][m] = None
        order[p].append(("F", m, direction[k[1]]))
    else:
      held[p][k[1]] = end[k]
      order[p].append(("B", k[1], direction[unit_of[k[1]]]))
  return order, max(end.values())


class Chimera(Schedule):
  """Two pipelines over the same ``P`` model blocks in opposite directions: device ``p`` holds
  block ``p`` of the *down* replica and block ``P - 1 - p`` of the *up* replica (two
  device-shares of weights), half of the microbatches go down, half go up, and the two
  replicas' gradients are summed (all-reduce) before one synchronous update per batch.

  ``P`` must be even and ``M`` a multiple of ``P`` (basic units of ``P`` microbatches, half
  down, half up); the per-device order is :func:`chimera_order`, built at the paper's unit
  times and re-timed by the timing pass with the actual durations. ``Action.chunk`` is the
  direction (0 down, 1 up) and ``Action.block`` the model block. :meth:`timed` plans the
  order with the durations it is timed with.

  Paper (Table 1): bubble ratio ``(D - 2) / (2N + D - 2)`` with ``D = P`` stages and ``N``
  microbatches, for equal forward and backward times: ``D - 2`` idle slots per device against
  ``2N`` busy ones (tested); the survey's ``D / (D + 2T)`` is checked in ``docs/claims.md``.
  Limitation (measured, not hidden): with ``B = 2F`` or ``3F`` this greedy concatenation of
  basic units loses to 1F1B (``P = 8, M = 32, F = 1, B = 2``: makespan 123 against 1F1B's
  117); the paper's forward doubling is :class:`~rpd.schedules.chimera_fd.ChimeraFD`
  (``chimera-fd``, 108 there); backward halving is not implemented.
  """

  name = "chimera"
  semantics = SYNC_FLUSH
  reference = "Li and Hoefler 2021 (Chimera)"
  replicas = 2

  def check(self, P: int, M: int, V: int = 1) -> None:
    """Needs ``P`` even and ``M`` a multiple of ``P``; ``V = 1`` (the two replicas are not chunks)."""
    super().check(P, M, V)
    if P % 2:
      raise ScheduleNotApplicable(f"chimera needs an even number of stages, got P={P}")
    if M % P:
      raise ScheduleNotApplicable(f"chimera needs M a multiple of P, got M={M}, P={P}")
    if P * M > MAX_CHIMERA_PM:
      raise ScheduleNotApplicable(f"chimera's list scheduler costs about (P M)^2 steps; needs "
                                  f"P M <= {MAX_CHIMERA_PM}, got P={P}, M={M}")

  def actions(self, P: int, M: int, V: int = 1, f: float = 1.0,
              b: float = 1.0) -> list[list[Action]]:
    """The order of :func:`chimera_order`; ``chunk`` = direction, ``block`` = model block."""
    self.check(P, M, V)
    return [[Action(p, kind, m, d, chimera_block(P, p, d)) for kind, m, d in acts]
            for p, acts in enumerate(chimera_order(P, M, f, b))]

  def timed(self, P: int, M: int, V: int = 1, durations=None, latency: float = 0.0):
    """Plan the order with the forward and backward durations it is timed with (scalars;
    the unit-time order if the planner stalls under the activation bound), then time it."""
    d = durations or {}
    f, b = d.get("F", 1.0), d.get("B", 1.0)
    if not all(isinstance(x, (int, float)) for x in (f, b)):
      f, b = 1.0, 1.0
    try:
      acts = self.actions(P, M, V, float(f), float(b))
    except ValueError:  # the planner stalls at these durations: plan at unit times
      acts = self.actions(P, M, V)
    return time_schedule(acts, V=V, durations=durations, latency=latency)
