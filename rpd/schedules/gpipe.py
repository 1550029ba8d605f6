"""GPipe: fill-drain with a flush (Huang et al., 2019, arXiv 1811.06965)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule
from rpd.schedules.semantics import SYNC_FLUSH


class GPipe(Schedule):
  """Fill-drain: every device runs all ``M`` forwards, then all ``M`` backwards.

  Gradients are accumulated over the ``M`` microbatches and applied in one synchronous
  update after the flush, so every gradient is computed at the current weights (no
  staleness, one weight version). Idle time ``(P - 1)(F + B)`` per device, all of it in the
  fill and the drain: bubble ``(P - 1) / (M + P - 1)`` of the total for any ``F, B``.
  """

  name = "gpipe"
  semantics = SYNC_FLUSH
  reference = "Huang et al. 2019 (GPipe)"

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """``actions[p] = F(0), ..., F(M-1), B(0), ..., B(M-1)`` for every device ``p``."""
    self.check(P, M, V)
    return [[Action(p, "F", m) for m in range(M)] + [Action(p, "B", m) for m in range(M)]
            for p in range(P)]
