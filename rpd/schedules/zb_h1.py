"""ZB-H1: Zero Bubble's memory-efficient handcrafted schedule (Qi et al., 2024, arXiv 2401.10241)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule, one_f_one_b_actions
from rpd.schedules.semantics import SYNC_FLUSH


class ZBH1(Schedule):
  """1F1B with the backward split into ``B`` (input gradient) and ``W`` (weight gradient).

  Device ``p`` (0-based) keeps the 1F1B order of ``F`` and ``B`` (``P - 1 - p`` warm-up
  forwards) and runs ``W(k)`` right after ``B(k + p)``: the ``W`` passes of the last ``p``
  microbatches are deferred to the end, where they fill the drain bubble. Every device then
  holds at most ``P`` microbatch activations (counted until ``W`` ends), the 1F1B peak.
  Synchronous: one update per batch after the flush.

  Paper (Table 2): bubble ``(P - 1)(T_F + T_B - T_W)`` per stage, against 1F1B's
  ``(P - 1)(T_F + T_B + T_W)``; a third of it when ``T_F = T_B = T_W``. This holds for
  ``T_W <= T_F`` only (tested): a deferred ``W`` must fit in the slot of a forward; with
  ``T_W > T_F`` the bubble is larger (``(P - 1) T_F`` at ``F = B = 1, W = 2``, where the
  formula gives 0).
  """

  name = "zb-h1"
  semantics = SYNC_FLUSH
  split_backward = True
  reference = "Qi et al. 2024 (Zero Bubble), handcrafted ZB-H1"

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """Per-device lists: the 1F1B ``F``/``B`` order with ``W(k)`` after ``B(k + p)``."""
    self.check(P, M, V)
    out = []
    for p, base in enumerate(one_f_one_b_actions(P, M)):
      acts, n_w = [], 0
      for a in base:
        acts.append(a)
        if a.kind == "B" and a.microbatch - p >= 0:
          acts.append(Action(p, "W", a.microbatch - p))
          n_w += 1
      acts.extend(Action(p, "W", k) for k in range(n_w, M))
      out.append(acts)
    return out
