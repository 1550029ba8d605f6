"""ZB-V: Zero Bubble's V-shaped schedule (Qi et al., 2024, arXiv 2401.10241, Sec. 6)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule, ScheduleNotApplicable
from rpd.schedules.semantics import SYNC_FLUSH


def v_block(P: int, p: int, chunk: int) -> int:
  """V-shaped placement: chunk 0 of device ``p`` is block ``p``, chunk 1 is ``2P - 1 - p``."""
  return p if chunk == 0 else 2 * P - 1 - p


def v_action(P: int, p: int, kind: str, m: int, chunk: int) -> Action:
  """An action of device ``p`` on its chunk ``chunk`` under the V-shaped placement."""
  return Action(p, kind, m, chunk, v_block(P, p, chunk))


class ZBV(Schedule):
  """Two chunks per device in a V: a microbatch goes down devices ``0..P-1`` through the
  blocks ``0..P-1`` and back up ``P-1..0`` through the blocks ``P..2P-1``, so the first and
  the last block share device 0 and the loss is computed where the input enters.

  Per-device order (PyTorch's ``ScheduleZBVZeroBubble``; ``n = max(M, 2P - 1)`` microbatches
  are planned and the passes of microbatches ``>= M`` dropped): ``2 (P - p) - 1`` forwards of
  chunk 0; ``p`` pairs (forward chunk 1, forward chunk 0); ``P - p`` triples (forward, input
  backward, weight backward of chunk 1); then steady groups (forward, backward, weight of
  chunk 0, then of chunk 1); cool-down: ``p`` pairs of input backwards (chunk 0, chunk 1),
  ``P - p`` pairs (backward chunk 0, oldest pending weight pass of chunk 0), and the
  remaining weight passes, chunk 1 first. Synchronous, one update per batch.

  Paper: with ``T_F = T_B = T_W`` the schedule has no bubble inside the steady state and a
  peak of ``P`` microbatches' activations in device-shares (``2P`` blocks of half size), the
  1F1B peak, where ZB-H2 needs ``2P - 1``.
  """

  name = "zb-v"
  semantics = SYNC_FLUSH
  chunked = True
  split_backward = True
  reference = "Qi et al. 2024 (Zero Bubble, ZB-V); PyTorch pipelining"

  def check(self, P: int, M: int, V: int = 2) -> None:
    """Exactly ``V = 2`` chunks per device."""
    super().check(P, M, V)
    if V != 2:
      raise ScheduleNotApplicable(f"{self.name} holds exactly V = 2 chunks per device, got V={V}")

  def actions(self, P: int, M: int, V: int = 2) -> list[list[Action]]:
    """Per-device lists (see the class docstring)."""
    self.check(P, M, V)
    n = max(M, 2 * P - 1)
    out = []
    for p in range(P):
      acts: list[Action] = []
      cnt = {"F0": 0, "F1": 0, "B0": 0, "B1": 0, "W0": 0, "W1": 0}

      def add(kind: str, c: int) -> None:
        key = f"{kind}{c}"
        acts.append(v_action(P, p, kind, cnt[key], c))
        cnt[key] += 1

      for _ in range(2 * (P - p) - 1):
        add("F", 0)
      for _ in range(p):
        add("F", 1)
        add("F", 0)
      for _ in range(P - p):
        add("F", 1)
        add("B", 1)
        add("W", 1)
      while cnt["F1"] < cnt["F0"] or cnt["F0"] < n:
        if cnt["F0"] < n:
          add("F", 0)
        add("B", 0)
        add("W", 0)
        add("F", 1)
        add("B", 1)
        add("W", 1)
      for _ in range(p):
        add("B", 0)
        add("B", 1)
      for _ in range(P - p):
        add("B", 0)
        add("W", 0)
      while cnt["W1"] < cnt["B1"]:
        add("W", 1)
      while cnt["W0"] < cnt["B0"]:
        add("W", 0)
      assert all(cnt[f"{k}{c}"] == n for k in "FBW" for c in (0, 1)), cnt
      out.append([a for a in acts if a.microbatch < M])
    return out
