"""PipeDream-2BW: 1F1B with double-buffered weights (Narayanan et al., 2021, arXiv 2006.09503)."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from rpd.schedules.core import (Action, Schedule, ScheduleNotApplicable, SteadyStateError,
                                TimedSchedule, one_f_one_b_actions)
from rpd.schedules.semantics import DOUBLE_BUFFERED


def batch_update_order(timed: TimedSchedule, batch: int) -> dict[tuple[int, int], int]:
  """Rank of every block update of a double-buffered run.

  Batch ``t`` (microbatches ``t * batch .. t * batch + batch - 1``) updates block ``b`` once,
  at the end of its last backward ``B(t * batch + batch - 1, b)`` (``W`` if split), with the
  gradient accumulated over the batch. Updates are ranked in time order, ties by block
  index (the conventions of :mod:`rpd.schedules.core`).

  Returns:
    ``rank[(t, b)]``, 0-based.
  """
  k = timed.update_kind
  n = timed.M // batch
  ups = sorted((timed.end[(k, t * batch + batch - 1, b)], b, t)
               for t in range(n) for b in range(timed.S))
  return {(t, b): r for r, (_, b, t) in enumerate(ups)}


def delay_tables_2bw(timed: TimedSchedule, batch: int, ms: Sequence[int]) -> np.ndarray:
  """Staleness pass of 2BW: the delay tables of microbatches ``ms`` (all in batches >= 2).

  2BW semantics (Narayanan et al. 2021, Sec. 3.1): ``W^(t+1) = W^(t) - nu grad f(W^(t-1))``.
  Every microbatch of batch ``t`` runs forward and backward on the version ``W^(t-1)``,
  i.e. block ``j`` as left by batch ``t - 2``'s update of it; the stage keeps that version
  and the newest one, ``W^(t)`` (two buffers). In block updates (module conventions of
  :mod:`rpd.schedules.core`), the read of block ``j`` happens right after the update
  ``(t - 2, j)``, so

      tau[i][j] = rank(t, i) - rank(t - 2, j) - 1.

  The pass *checks* the double-buffering premise from the timeline: version ``W^(t-1)`` of
  block ``j`` must exist before batch ``t``'s first forward on ``j``, i.e. the update
  ``(t - 2, j)`` ends no later than ``F(t * batch, j)`` starts.

  Raises:
    ScheduleNotApplicable: if the premise fails (too small a batch for the pipeline depth).
  """
  if timed.M % batch:
    raise ScheduleNotApplicable(f"2BW needs M a multiple of the batch, got M={timed.M}, "
                                f"batch={batch}")
  k = timed.update_kind
  rank = batch_update_order(timed, batch)
  out = np.zeros((len(ms), timed.S, timed.S), dtype=np.int64)
  for r, m in enumerate(ms):
    t = m // batch
    if t < 2:
      raise ValueError(f"microbatch {m} is in batch {t}; 2BW delays need batch >= 2")
    for j in range(timed.S):
      ready = timed.end[(k, (t - 1) * batch - 1, j)]
      if ready > timed.start[("F", t * batch, j)] + 1e-12:
        raise ScheduleNotApplicable(
            f"2BW with batch={batch} and S={timed.S}: version W^(t-1) of block {j} is not "
            f"ready when batch t starts (needs a batch of at least about S microbatches)")
    for i in range(timed.S):
      for j in range(timed.S):
        out[r, i, j] = rank[(t, i)] - rank[(t - 2, j)] - 1
  return out


class PipeDream2BW(Schedule):
  """Asynchronous 1F1B without flush, gradients accumulated over batches of ``batch``
  microbatches, weights double-buffered.

  Timeline: :func:`~rpd.schedules.core.one_f_one_b_actions`. Update semantics:
  :func:`delay_tables_2bw`; one update of every block per batch, a one-version lag, two
  weight versions per stage. Closed form (tested against the pass):
  ``tau[i][j] = 2S - 1 + j - i`` (0-based), ``tau_max = 3S - 2``: in the block-update
  counting of :mod:`rpd.schedules.core` one version of lag is ``S`` block updates, plus the
  updates of the current batch that precede block ``i``'s (``S - 1 - i``), plus those of the
  previous batch that follow block ``j``'s (``j``).

  Attributes:
    batch: microbatches per optimizer step, default ``None`` = the run's ``M`` in
      :mod:`rpd.schedules.metrics`, and ``P`` in :meth:`delay_table`.
  """

  name = "pipedream-2bw"
  semantics = DOUBLE_BUFFERED
  reference = "Narayanan et al. 2021 (PipeDream-2BW)"

  def __init__(self, batch: int | None = None):
    self.batch = batch

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """The 1F1B order of :func:`~rpd.schedules.core.one_f_one_b_actions`."""
    self.check(P, M, V)
    return one_f_one_b_actions(P, M)

  def steady_state_microbatches(self, P: int, V: int = 1, batch: int | None = None) -> int:
    """Nine batches: the central third (batches 3..5) is far from both ends."""
    return 9 * (batch or self.batch or P)

  def delay_table(self, P: int, V: int = 1, durations=None, latency: float = 0.0,
                  batch: int | None = None) -> np.ndarray:
    """Steady-state 2BW delay table, checked to agree over batches 3..5 of a 9-batch run.

    Args:
      batch: microbatches per optimizer step (default :attr:`batch`, else ``P``).
    """
    batch = batch or self.batch or P
    M = self.steady_state_microbatches(P, V, batch)
    timed = self.timed(P, M, V, durations, latency)
    window = list(range(3 * batch, 6 * batch))
    tables = delay_tables_2bw(timed, batch, window)
    for m, t in zip(window, tables):
      if not np.array_equal(t, tables[0]):
        raise SteadyStateError(f"2BW delay table of microbatch {m} differs from that of "
                               f"microbatch {window[0]}")
    return tables[0]


def smallest_delay_tables_2bw(timed: TimedSchedule, batch: int, ms: Sequence[int]) -> np.ndarray:
  """The smallest delays that give 2BW's values: ``rank(t, i) - rank(t - 1, j)``.

  Block ``j`` keeps the value ``W^(t-1)`` from the update ``(t - 2, j)`` until the update
  ``(t - 1, j)``, so every delay in ``[rank(t, i) - rank(t - 1, j),
  rank(t, i) - rank(t - 2, j) - 1]`` reads the same value; :func:`delay_tables_2bw` reports
  the upper end (counted from the version's creation, max ``3S - 2``), this the lower end
  (max ``2S - 1`` in steady state).
  """
  rank = batch_update_order(timed, batch)
  delay_tables_2bw(timed, batch, ms)  # checks the double-buffering premise
  out = np.zeros((len(ms), timed.S, timed.S), dtype=np.int64)
  for r, m in enumerate(ms):
    t = m // batch
    for i in range(timed.S):
      for j in range(timed.S):
        out[r, i, j] = rank[(t, i)] - rank[(t - 1, j)]
  return out
