"""Interleaved zero bubble (ZB1P with ``V >= 2`` chunks; Qi et al., 2024, arXiv 2401.10241)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule
from rpd.schedules.interleaved import check_interleaved, interleaved_pass, round_size
from rpd.schedules.semantics import SYNC_FLUSH


class InterleavedZeroBubble(Schedule):
  """Megatron's interleaved placement (block ``b = c P + p``) with the backward split.

  The ``M V`` chunk passes of a device are numbered as in
  :class:`~rpd.schedules.interleaved.Interleaved1F1B` (pass ``k``: microbatch
  ``(k // (P V)) P + k % P``, forward chunk ``(k // P) % V``, backward chunk
  ``V - 1 - (k // P) % V``). Device ``p`` runs ``w_p = min((V - 1) P + P - 1 - p, M V)``
  warm-up forwards (one fewer per later device than Megatron's ``2 (P - 1 - p)``: the
  weight passes fill the gap), then alternates forward ``k + w_p`` and input-gradient
  backward ``k``, then drains the backwards. The weight gradient ``W`` of pass ``k`` runs
  right after the backward of pass ``k + p`` (ZB-H1's deferral of ``p`` passes on device
  ``p``); the last ``p`` weight passes close the device's list. This is the order of
  PyTorch's ``ScheduleInterleavedZeroBubble`` (the paper's ZB-1p with ``V`` chunks).
  Synchronous, one update per batch. ``M`` not a multiple of ``P``: PyTorch's rounds of
  ``n = M / max(1, M // P)`` microbatches replace ``P`` in the numbering and the warm-up
  (``(V - 1) n + P - 1 - p``), as in :class:`~rpd.schedules.interleaved.Interleaved1F1B`.

  With ``V = 1`` chunk it is ZB-H1 with one fewer warm-up forward per device.
  """

  name = "interleaved-zb"
  semantics = SYNC_FLUSH
  chunked = True
  split_backward = True
  reference = "Qi et al. 2024 (Zero Bubble, ZB-1p interleaved); PyTorch pipelining"

  def check(self, P: int, M: int, V: int = 1) -> None:
    """Needs ``V >= 2`` and ``M`` a multiple of ``max(1, M // P)`` (as interleaved 1F1B)."""
    super().check(P, M, V)
    check_interleaved("interleaved zero bubble", P, M, V)

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """Per-device lists (see the class docstring)."""
    self.check(P, M, V)
    total = M * V
    n = round_size(P, M)

    def pass_of(k: int, forward: bool, p: int, kind: str) -> Action:
      return interleaved_pass(P, V, k, forward, p, kind, n)

    out = []
    for p in range(P):
      warm = min((V - 1) * n + P - 1 - p, total)
      acts = [pass_of(k, True, p, "F") for k in range(warm)]
      n_w = 0

      def backward(k: int) -> None:
        nonlocal n_w
        acts.append(pass_of(k, False, p, "B"))
        if k - p >= 0:
          acts.append(pass_of(k - p, False, p, "W"))
          n_w += 1

      for k in range(total - warm):
        acts.append(pass_of(k + warm, True, p, "F"))
        backward(k)
      for k in range(total - warm, total):
        backward(k)
      acts.extend(pass_of(k, False, p, "W") for k in range(n_w, total))
      out.append(acts)
    return out
