"""DualPipe-V: DeepSeek's V-shaped DualPipe (DeepSeek-AI, 2024, arXiv 2412.19437; DualPipe repo)."""
from __future__ import annotations

from rpd.schedules.core import (Action, Schedule, ScheduleNotApplicable, TimedSchedule,
                                block_of, dependencies, time_schedule)
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
  its ``W``. DualPipe runs the forward of one chunk *overlapped* with the full backward of
  the other (``_forward_backward_chunk``: every pair of step 4 except the first pair on the
  last device, and the pair of step 5; :meth:`overlapped`). Without a duration ``FB`` the
  timing pass runs the pair back to back (forward first, no overlap gain). With ``FB`` in the
  durations (the README's ``F&B``, the time of the overlapped pair; ``max(F, B + W)`` is
  perfect overlap, ``F + B + W`` none), the pair is one action of length ``FB``
  (:func:`time_overlapped`). Bubble, DualPipe README (``PP = 2P`` stages, ``B`` a full
  backward): ``(PP/2 - 1)(F&B + B - 3W)`` (tested).
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
    return self._orders(P, M, V)[0]

  def overlapped(self, P: int, M: int, V: int = 2) -> list[list[int]]:
    """Per device, the list positions ``i`` where an overlapped pair starts: actions
    ``i, i + 1, i + 2`` are ``F`` of one chunk and the full backward (``B``, ``W``) of the
    other, run by DualPipe as one ``_forward_backward_chunk``."""
    return self._orders(P, M, V)[1]

  def timed(self, P: int, M: int, V: int = 2, durations=None, latency: float = 0.0):
    """Back to back without ``FB`` in ``durations``; else the pairs overlapped
    (:func:`time_overlapped`)."""
    d = dict(durations or {})
    fb = d.pop("FB", None)
    if fb is None:
      return time_schedule(self.actions(P, M, V), V=V, durations=d, latency=latency)
    acts, groups = self._orders(P, M, V)
    return time_overlapped(acts, groups, float(fb), V=V, durations=d, latency=latency)

  def _orders(self, P: int, M: int, V: int = 2):
    self.check(P, M, V)
    out, groups = [], []
    for p in range(P):
      acts: list[Action] = []
      pairs: list[int] = []
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
      for i in range(M - 2 * P + p + 1):
        if not (i == 0 and p == P - 1):  # DualPipe does not overlap the last rank's first
          pairs.append(len(acts))
        forward(0)
        backward(1)
        pairs.append(len(acts))
        forward(1)
        backward(0)
      for _ in range(P - 1 - p):
        backward(1)
        pairs.append(len(acts))
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
      groups.append(pairs)
    return out, groups


def time_overlapped(actions, groups, fb: float, *, V: int = 2, durations=None,
                    latency: float = 0.0) -> TimedSchedule:
  """Timing pass with overlapped pairs: list scheduling as
  :func:`~rpd.schedules.core.time_schedule`, except that the three actions ``F, B, W`` at
  ``groups[p]`` positions form one action of length ``fb``: it starts when the device is free
  and the dependencies of its ``F`` and its ``B`` have ended, and both outputs (the
  activation sent on, the gradient sent back) and the update are ready at its end.

  Bookkeeping: the pair's interval ``[s, s + fb)`` is recorded as its parts in proportion
  ``F : B : W`` (so busy time counts ``fb`` once; ``F`` reads at ``s``, the update lands at
  ``s + fb``); dependencies use the pair's end.
  """
  P = len(actions)
  dur = {"F": 1.0, "B": 1.0, "W": 1.0}
  dur.update(durations or {})
  S = 1 + max(block_of(a, P) for acts in actions for a in acts)
  M = 1 + max(a.microbatch for acts in actions for a in acts)
  start: dict = {}
  end: dict = {}
  ready: dict = {}  # when the action's output is available to its dependants
  device_of: dict = {}
  ptr = [0] * P
  free = [0.0] * P
  heads = [set(g) for g in groups]
  total = sum(len(a) for a in actions)
  placed = 0
  while placed < total:
    progress = False
    for p in range(P):
      acts = actions[p]
      while ptr[p] < len(acts):
        i = ptr[p]
        n = 3 if i in heads[p] else 1
        unit = acts[i:i + n]
        keys = [(a.kind, a.microbatch, block_of(a, P)) for a in unit]
        if any(k in end for k in keys):
          raise ValueError(f"duplicate action in {unit}")
        deps = [d for k in keys for d in dependencies(*k, S, True) if d not in keys]
        if not all(d in ready for d in deps):
          break
        t = free[p]
        for d in deps:
          t = max(t, ready[d] + (latency if device_of[d] != p else 0.0))
        lengths = [float(dur[a.kind]) for a in unit]
        if n == 3:
          scale = fb / sum(lengths) if sum(lengths) > 0 else 0.0
          lengths = [x * scale for x in lengths]
        s0 = t
        for k, x in zip(keys, lengths):
          start[k], end[k] = s0, s0 + x
          s0 += x
          device_of[k] = p
        for k in keys:
          ready[k] = s0
        free[p] = s0
        ptr[p] += n
        placed += n
        progress = True
    if not progress:
      stuck = [actions[p][ptr[p]] for p in range(P) if ptr[p] < len(actions[p])]
      raise ValueError(f"schedule deadlocks; next actions per device: {stuck}")
  return TimedSchedule(P=P, V=V, M=M, actions=tuple(tuple(a) for a in actions), start=start,
                       end=end, update_kind="W", n_blocks=S)
