"""1F1B with a flush: PipeDream-Flush (Narayanan et al., 2021) and DAPPLE (Fan et al., 2021)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule, one_f_one_b_actions
from rpd.schedules.semantics import SYNC_FLUSH


class OneFOneBFlush(Schedule):
  """Synchronous 1F1B: PipeDream's order (:func:`~rpd.schedules.core.one_f_one_b_actions`),
  then a flush and one update with the gradient accumulated over the ``M`` microbatches.

  Same makespan as GPipe for ``F = B`` (bubble ``(P - 1) / (M + P - 1)``), but device ``p``
  holds at most ``min(P - p, M)`` microbatch activations instead of ``M``.
  """

  name = "1f1b-flush"
  semantics = SYNC_FLUSH
  reference = "Narayanan et al. 2021 (PipeDream-Flush); Fan et al. 2021 (DAPPLE)"

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """``P - 1 - p`` warm-up forwards on device ``p``, then ``F, B`` pairs, then the drain."""
    self.check(P, M, V)
    return one_f_one_b_actions(P, M)
