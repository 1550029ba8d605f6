"""DualPipe-V: DeepSeek's V-shaped DualPipe (DeepSeek-AI, 2024, arXiv 2412.19437; DualPipe repo)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule, ScheduleNotApplicable
from rpd.schedules.zb_v import v_action
from rpd.schedules.semantics import SYNC_FLUSH


class DualPipeV(Schedule):
  """DualPipe "cut in half": the V-shaped placement of :class:`~rpd.schedules.zb_v.ZBV`
  (chunk 0 of device ``p`` = block ``p``, chunk 1 = block ``2P - 1 - p``) with DualPipe's
  eight-step order on device ``p`` (``M >= 2P`` microbatches):

  1. ``2 (P - 1 - p)`` forwards of chunk 0;
  2. ``p + 1`` pairs (forward chunk 0, forward chunk 1);
  3. ``P - 1 - p`` triples (input backward chunk 1, its weight pass, forward chunk 1);
  4. ``M - 2P + p + 1`` main steps (forward chunk 0 + backward chunk 1, forward chunk 1 +
     backward chunk 0);
  5. ``P - 1 - p`` pairs (backward chunk 1, forward chunk 1 + backward chunk 0);
  6. ``p + 1`` pairs (backward chunk 1, backward chunk 0), the second half as input
     backwards whose weight passes are deferred (from the middle pair on: before its
     chunk-1 backward on odd devices, before its chunk-0 backward on even ones);
  7. ``P - 1 - p`` pairs (oldest deferred weight pass, input backward chunk 0, deferred);
  8. the ``p + 1`` remaining deferred weight passes, oldest first.

  A "backward" not marked as an input backward is a full one: ``B`` immediately followed by
  its ``W``. DualPipe runs the forward of one chunk *overlapped* with the backward of the
  other (computation hiding the expert-parallel all-to-all); rpd's timing pass runs one
  action at a time, so the overlapped pair is simulated back to back (forward first), with
  no overlap gain: the makespans are those of the order, not of DualPipe's overlap.
  Synchronous, one update per batch.
  """

  name = "dualpipe-v"
  semantics = SYNC_FLUSH
  chunked = True
  split_backward = True
  reference = "DeepSeek-AI 2024 (DualPipe, DualPipeV); PyTorch pipelining"

  def check(self, P: int, M: int, V: int = 2) -> None:
    """Exactly ``V = 2`` chunks and ``M >= 2P`` microbatches."""
    super().check(P, M, V)
    if V != 2:
      raise ScheduleNotApplicable(f"{self.name} holds exactly V = 2 chunks per device, got V={V}")
    if M < 2 * P:
      raise ScheduleNotApplicable(f"{self.name} needs M >= 2P microbatches, got M={M}, P={P}")

  def actions(self, P: int, M: int, V: int = 2) -> list[list[Action]]:
    """Per-device lists (see the class docstring)."""
    self.check(P, M, V)
    out = []
    for p in range(P):
      acts: list[Action] = []
      f = [0, 0]
      b = [0, 0]
      pending: list[tuple[int, int]] = []

      def forward(c: int) -> None:
        acts.append(v_action(P, p, "F", f[c], c))
        f[c] += 1

      def backward(c: int, zb: bool = False) -> None:
        acts.append(v_action(P, p, "B", b[c], c))
        if zb:
          pending.append((c, b[c]))
        else:
          acts.append(v_action(P, p, "W", b[c], c))
        b[c] += 1

      def weight() -> None:
        c, m = pending.pop(0)
        acts.append(v_action(P, p, "W", m, c))

      for _ in range(2 * (P - 1 - p)):
        forward(0)
      for _ in range(p + 1):
        forward(0)
        forward(1)
      for _ in range(P - 1 - p):
        backward(1, zb=True)
        weight()
        forward(1)
      for _ in range(M - 2 * P + p + 1):
        forward(0)
        backward(1)
        forward(1)
        backward(0)
      for _ in range(P - 1 - p):
        backward(1)
        forward(1)
        backward(0)
      zb = False
      for i in range(p + 1):
        if i == (p + 1) // 2 and p % 2 == 1:
          zb = True
        backward(1, zb)
        if i == (p + 1) // 2 and p % 2 == 0:
          zb = True
        backward(0, zb)
      for _ in range(P - 1 - p):
        weight()
        backward(0, zb=True)
      while pending:
        weight()
      assert f == b == [M, M], (f, b)
      out.append(acts)
    return out
