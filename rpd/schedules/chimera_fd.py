"""Chimera with forward doubling (Li and Hoefler, SC 2021, Section "N > D"): each forward
pass carries two microbatches, so that at ``B = 2F`` a forward slot is as long as a
backward slot and the basic units of the bidirectional pipeline concatenate without the
intermediate bubbles of direct concatenation."""
from __future__ import annotations

from rpd.schedules.chimera import MAX_CHIMERA_PM, Chimera, bidirectional_list_order, chimera_block
from rpd.schedules.core import Action, ScheduleNotApplicable, time_schedule


def chimera_fd_order(P: int, M: int, t_f: float = 1.0, t_b: float = 2.0,
                     ) -> tuple[list[list[tuple[str, int, int]]], float]:
  """Per-device order of Chimera with forward doubling, and its makespan with fused pairs.

  Microbatches ``2u, 2u + 1`` form forward unit ``u``; even units go down, odd ones up (a
  basic unit of ``P`` forward units = ``2P`` microbatches sends half each way; any even ``M``
  is balanced). The doubled forward ``F(u, b)`` lasts ``2 t_f`` and needs ``F(u, b - 1)``;
  ``B(m, b)`` lasts ``t_b`` and needs ``F(u(m), b)`` and ``B(m, b + 1)``. Non-delay list
  scheduling as in :func:`~rpd.schedules.chimera.chimera_order` (earliest start, backward
  first, deeper block, lower index), a doubled forward waiting while its device holds ``2P``
  microbatches' activations (the doubled forward doubles Chimera's activation bound; the
  paper pairs it with recomputation, which this model does not time).

  Returns:
    ``(order, makespan)``: ``order[p]`` lists ``(kind, microbatch, direction)`` with each
    doubled forward written as its two forwards back to back; ``makespan`` is the list
    scheduler's own, with each pair fused into one action of ``2 t_f``.
  """
  U = M // 2
  return bidirectional_list_order(P, [[2 * u, 2 * u + 1] for u in range(U)],
                                  [u % 2 for u in range(U)], 2 * t_f, t_b, cap=2 * P,
                                  name="chimera-fd")


class ChimeraFD(Chimera):
  """Chimera with forward doubling: the order of :func:`chimera_fd_order`.

  Same placement and semantics as :class:`~rpd.schedules.chimera.Chimera` (two replicas,
  one synchronous update per batch; ``Action.chunk`` = direction). The executor runs each
  doubled forward as its two forwards back to back; the timing pass times them so (the
  second microbatch's forward on the next device then waits for the pair only as long as
  the fused pass would: never longer, tested).

  Bubble (derived here, the paper's text was not retrievable; see ``docs/claims.md``): with
  ``2F = B`` every slot is one backward long and a device runs ``M/2`` doubled forwards and
  ``M`` backwards, ``3M/2`` slots; the fill and drain leave ``P - 2`` idle slots as in
  Chimera's basic unit, so the makespan is ``(3M/2 + P - 2) B`` and the bubble ratio
  ``(P - 2) / (3M/2 + P - 2)`` (tested against the simulator for ``P <= 8``).

  ``P`` and ``M`` even (the formula above for ``M`` a multiple of ``2P``).
  """

  name = "chimera-fd"
  reference = "Li and Hoefler 2021 (Chimera, forward doubling)"

  def check(self, P: int, M: int, V: int = 1) -> None:
    """Needs ``P`` and ``M`` even (forward pairs, two directions); ``V = 1``."""
    if V != 1:
      raise ScheduleNotApplicable(f"{self.name} holds one chunk per device, got V={V}")
    if P < 1 or M < 1:
      raise ScheduleNotApplicable(f"need P, M >= 1, got P={P}, M={M}")
    if P % 2:
      raise ScheduleNotApplicable(f"chimera-fd needs an even number of stages, got P={P}")
    if M % 2:
      raise ScheduleNotApplicable(f"chimera-fd needs an even M (forward pairs), got M={M}")
    if P * M > MAX_CHIMERA_PM:
      raise ScheduleNotApplicable(f"chimera-fd's list scheduler costs about (P M)^2 steps; "
                                  f"needs P M <= {MAX_CHIMERA_PM}, got P={P}, M={M}")

  def actions(self, P: int, M: int, V: int = 1, f: float = 1.0,
              b: float = 2.0) -> list[list[Action]]:
    """The order of :func:`chimera_fd_order` (planned at ``B = 2F`` by default)."""
    self.check(P, M, V)
    return [[Action(p, kind, m, d, chimera_block(P, p, d)) for kind, m, d in acts]
            for p, acts in enumerate(chimera_fd_order(P, M, f, b)[0])]

  def timed(self, P: int, M: int, V: int = 1, durations=None, latency: float = 0.0):
    """Plan with the scalar forward and backward durations it is timed with, then time it."""
    d = durations or {}
    f, b = d.get("F", 1.0), d.get("B", 1.0)
    if not all(isinstance(x, (int, float)) for x in (f, b)):
      f, b = 1.0, 2.0
    try:
      acts = self.actions(P, M, V, float(f), float(b))
    except ValueError:
      acts = self.actions(P, M, V)
    return time_schedule(acts, V=V, durations=durations, latency=latency)
