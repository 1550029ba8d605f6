"""ZB-H2: Zero Bubble's zero-bubble handcrafted schedule (Qi et al., 2024, arXiv 2401.10241)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule
from rpd.schedules.semantics import SYNC_FLUSH


def greedy_split_actions(P: int, M: int, limits: list[int]) -> list[list[Action]]:
  """Per-device orders from a unit-time greedy list scheduler with split backwards.

  Time advances in unit steps (``F = B = W = 1``, no latency, the paper's assumption for its
  handcrafted schedules). At each step a free device ``p`` runs the first available of: the
  oldest ready ``B``; the next ``F`` if fewer than ``limits[p]`` microbatches are between the
  start of their ``F`` and the end of their ``W`` on ``p``; the oldest pending ``W``. The
  resulting orders are then re-timed by :func:`~rpd.schedules.core.time_schedule` with the
  actual durations.

  Args:
    P: devices (one block each).
    M: microbatches.
    limits: per-device in-flight limit (microbatch activations up to the end of ``W``).

  Returns:
    ``actions[p]``.
  """
  end: dict = {}
  acts: list[list[Action]] = [[] for _ in range(P)]
  next_f = [0] * P
  next_b = [0] * P      # B runs in microbatch order on every device
  next_w = [0] * P      # W too
  in_flight = [0] * P
  free = [0] * P
  t, placed, total = 0, 0, 3 * M * P
  inf = float("inf")
  while placed < total:
    for p in range(P):
      if free[p] > t:
        continue
      m_b, m_f, m_w = next_b[p], next_f[p], next_w[p]
      choice = None
      if (m_b < M and end.get(("F", m_b, p), inf) <= t
          and (p == P - 1 or end.get(("B", m_b, p + 1), inf) <= t)):
        choice = ("B", m_b)
      elif (m_f < M and in_flight[p] < limits[p]
            and (p == 0 or end.get(("F", m_f, p - 1), inf) <= t)):
        choice = ("F", m_f)
      elif m_w < next_b[p]:
        choice = ("W", m_w)
      if choice is None:
        continue
      kind, m = choice
      end[(kind, m, p)] = t + 1
      free[p] = t + 1
      acts[p].append(Action(p, kind, m))
      placed += 1
      if kind == "F":
        next_f[p] += 1
        in_flight[p] += 1
      elif kind == "B":
        next_b[p] += 1
      else:
        next_w[p] += 1
        in_flight[p] -= 1
    t += 1
  return acts


class ZBH2(Schedule):
  """Zero Bubble's ZB-H2: more warm-up forwards, ``W`` passes fill every bubble.

Every device may hold up to ``2P - 1`` microbatches between the start of ``F`` and the end
  of ``W`` (the paper's ``(2p - 1) M_B`` peak), so the warm-up runs extra forwards; ``B`` has
  priority, then ``F``, and ``W`` fills the remaining slots; the deferred ``W`` passes form
  the parallelogram tail. (Counted until the end of ``B`` the peak is ``2 (P - 1 - p) + 1``
  on device ``p``.) The order is built
  by :func:`greedy_split_actions` for ``F = B = W`` and re-timed with the actual durations.
  Synchronous semantics (the paper bypasses the optimizer synchronisation with
  post-validation; the update is still one per batch).

  Paper (Table 2): bubble ``(P - 1)(T_F + T_B - 2 T_W)`` per stage, zero when
  ``T_F = T_B = T_W``: measured *inside each stage's own span* (the parallelogram), not over
  the whole makespan; see :mod:`rpd.schedules.metrics`.
  """

  name = "zb-h2"
  semantics = SYNC_FLUSH
  split_backward = True
  reference = "Qi et al. 2024 (Zero Bubble), handcrafted ZB-H2"

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """Greedy unit-time order with in-flight limit ``2P - 1`` on every device."""
    self.check(P, M, V)
    return greedy_split_actions(P, M, [2 * P - 1] * P)
