"""PipeDream: asynchronous 1F1B with weight stashing and no flush (Harlap et al., 2018)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule, one_f_one_b_actions
from rpd.schedules.semantics import ASYNC_STASH


class PipeDream(Schedule):
  """Asynchronous 1F1B, no flush, weight stashing.

  Stage ``s`` (1-based) runs ``S - s`` warm-up forwards, then alternates one forward and one
  backward (``F, B, F, B, ...``), then drains the remaining backwards. Each backward applies
  its block's update as soon as it ends (see :mod:`rpd.schedules.core` for the conventions).
  In 0-based device index ``p`` the warm-up has ``P - 1 - p`` forwards.
  """

  name = "pipedream"
  semantics = ASYNC_STASH

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """Per-device action lists.

    Args:
      P: number of stages (devices).
      M: number of microbatches.
      V: must be 1 (PipeDream holds one chunk per device).

    Returns:
      ``actions[p]``: ``F(0..w-1)``, then ``F(w), B(0), F(w+1), B(1), ...``, then the
      remaining ``B`` s, with ``w = min(P - 1 - p, M)``.
    """
    if V != 1:
      raise ValueError(f"pipedream holds one chunk per device, got V={V}")
    return one_f_one_b_actions(P, M)
