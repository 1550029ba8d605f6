"""PipeMare: asynchronous 1F1B without weight stashing (Yang et al., 2021, arXiv 1910.05124)."""
from __future__ import annotations

import numpy as np

from rpd.schedules.core import Action, Schedule, one_f_one_b_actions, steady_state_delay_table
from rpd.schedules.semantics import ASYNC_NOSTASH


class PipeMare(Schedule):
  """PipeDream's asynchronous 1F1B order, no flush, *no* weight stashing.

  Each block is updated at the end of its backward, as in PipeDream, but the backward of
  microbatch ``m`` at block ``j`` reads the weights current at its *start* instead of the
  version its forward read. A gradient therefore mixes two versions of the weights, and
  PipeMare has two delay tables (conventions of :mod:`rpd.schedules.core`):

  * forward delays ``tau_F[i][j]``: updates between the read of block ``j`` at the start of
    ``F(m, j)`` and the update of block ``i`` (:meth:`delay_table`, identical to PipeDream's
    table since the timeline is the same);
  * backward delays ``tau_B[i][j]``: updates between the read of block ``j`` at the start
    of ``B(m, j)`` and the update of block ``i`` (:meth:`delay_table_backward`).

  Only the current weights are kept: one version per stage. (PipeMare's learning-rate
  rescheduling and weight prediction are optimizer choices, not part of the timeline.)
  """

  name = "pipemare"
  semantics = ASYNC_NOSTASH
  reference = "Yang et al. 2021 (PipeMare)"

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """The 1F1B order of :func:`~rpd.schedules.core.one_f_one_b_actions`."""
    self.check(P, M, V)
    return one_f_one_b_actions(P, M)

  def delay_table_backward(self, P: int, V: int = 1, durations=None,
                           latency: float = 0.0, raw: bool = False) -> np.ndarray:
    """Steady-state backward delay table ``tau_B`` (S x S, int64), checked per microbatch.

    The gradient of block ``i`` reads block ``j`` in the backward only for ``j > i`` (the
    backward chain from the loss down to block ``i`` passes through blocks ``S-1 .. i+1``;
    ``B(m, j)`` for ``j <= i`` does not contribute to block ``i``'s gradient, and for ``j < i``
    it even starts after block ``i`` is updated, so the raw count is negative there). By
    default the entries ``j <= i`` are therefore the forward delays ``tau_F[i][j]``, the only
    read of block ``j`` that block ``i``'s gradient depends on; ``raw=True`` returns the
    plain counts of :func:`~rpd.schedules.core.delay_tables` with ``read_kind="B"``.
    """
    timed = self.timed(P, self.steady_state_microbatches(P, V), V, durations, latency)
    tau_b = steady_state_delay_table(timed, read_kind="B")
    if raw:
      return tau_b
    tau_f = steady_state_delay_table(timed, read_kind="F")
    S = tau_b.shape[0]
    upper = np.triu(np.ones((S, S), dtype=bool), k=1)  # j > i
    return np.where(upper, tau_b, tau_f)
