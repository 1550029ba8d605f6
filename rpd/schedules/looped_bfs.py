"""Looped BFS: breadth-first interleaving (Lamy-Poirier, 2023, arXiv 2211.05953)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule
from rpd.schedules.semantics import SYNC_FLUSH


class LoopedBFS(Schedule):
  """Breadth-first pipeline: ``V`` chunks per device, block ``b = c P + p``, GPipe per chunk.

  Device ``p`` runs the forwards of every microbatch through its chunk 0, then through chunk
  1, ..., chunk ``V - 1``; then the backwards chunk by chunk in reverse order (``V - 1`` down
  to 0), each chunk's microbatches in reverse order (the last forward's backward is ready
  first), as PyTorch's ``ScheduleLoopedBFS``. Synchronous, one update per batch; every
  device holds the activations of all ``M`` microbatches of all its chunks (``V M`` blocks'
  worth, i.e. ``M`` device-shares, as GPipe).

  Closed form (tested): for ``M >= P`` the loop never waits (device 0 finishes the ``M``
  forwards of chunk ``c`` no earlier than microbatch 0 returns from device ``P - 1``), so
  ``makespan = (V M + P - 1)(f + b)`` with per-chunk durations ``f = F/V, b = B/V``: bubble
  ``(P - 1)/(V M + P - 1)``, the interleaved-1F1B bubble at GPipe's memory.
  """

  name = "looped-bfs"
  semantics = SYNC_FLUSH
  chunked = True
  reference = "Lamy-Poirier 2023 (Breadth-First Pipeline Parallelism)"

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """Forwards chunk by chunk, then backwards in reverse chunk and microbatch order."""
    self.check(P, M, V)
    out = []
    for p in range(P):
      acts = [Action(p, "F", m, c) for c in range(V) for m in range(M)]
      acts += [Action(p, "B", m, c) for c in reversed(range(V)) for m in reversed(range(M))]
      out.append(acts)
    return out
