"""An independent NumPy replay of a weight-stashing pipeline run, from the schedule's timeline.

Written from the schedule (``rpd.schedules``: action lists and the timing pass) and the
documented conventions only, not from the engine's event programs:

* microbatch ``m`` reads block ``b`` at the start of ``F(m, b)`` (weight stashing: the copy is
  what its gradient sees) and block ``b`` is updated at the end of its update action
  (``B``, or ``W`` for split backwards) with block ``b`` of ``m``'s gradient;
* at equal times updates come before reads, and updates go by block index;
* one gradient per microbatch, at the point it read (exact gradients here, so no samples);
* the run starts in steady state, just before the first update of microbatch ``m0``
  (engine microbatch ``n = m - m0``): every read before that point saw ``x^0``;
* mitigations: weight prediction reads ``stash_j + h_j v_j`` (``h_j``: updates of block
  ``j`` between ``m``'s read of ``j`` and its update of ``j``, counted on the timeline;
  ``v_j``: the last update of block ``j`` since the start, zero before); delay compensation
  applies ``g + lam g g (x - point)`` to the updated block.

Float64 throughout, plain loops.
"""
from __future__ import annotations

import numpy as np

from rpd.schedules import get_schedule


def timeline(name: str, S: int, M: int):
  """Events ``(kind, m, b)`` in time order (``"R"``: read, ``"U"``: update)."""
  timed = get_schedule(name).timed(S, M, 1)
  ev = []
  for (kind, m, b), t in timed.start.items():
    if kind == "F":
      ev.append((t, 1, b, "R", m))
  for (kind, m, b), t in timed.end.items():
    if kind == timed.update_kind:
      ev.append((t, 0, b, "U", m))
  ev.sort()
  return [(kind, m, b) for _, _, b, kind, m in ev]


def replay(name: str, S: int, K: int, gamma: float, A, bvec, x0_SxD, predict=False, lam=None):
  """The iterate after ``K`` block updates, and ``x`` after every update, ``(K + 1, S, D)``.

  ``f(x) = 1/2 x'Ax - b'x`` on the flat ``x`` (``S`` equal blocks of width ``D``).
  """
  D = x0_SxD.shape[1]
  m0 = 2 * S
  M = m0 + K // S + 3 * S
  events = timeline(name, S, M)
  start = next(p for p, (kind, m, _) in enumerate(events) if kind == "U" and m == m0)
  # h_j from the whole timeline: updates of j between m's read of j and m's update of j
  count = np.zeros(S, int)
  read_count = {}
  horizon = {}
  for kind, m, b in events:
    if kind == "R":
      read_count[(m, b)] = count[b]
    else:
      horizon[(m, b)] = count[b] - read_count[(m, b)]
      count[b] += 1
  h = np.array([horizon[(m0, b)] for b in range(S)])  # a steady-state microbatch
  x = np.array(x0_SxD, np.float64)
  v = np.zeros_like(x)
  stash: dict = {}
  point: dict = {}
  grad: dict = {}
  hist = [x.copy()]
  for kind, m, b in events[:start]:  # gradients taken before the start: at x^0, v = 0
    if kind == "U" and m not in grad:
      point[m] = np.array(x0_SxD, np.float64)
      grad[m] = (A @ point[m].reshape(-1) - bvec).reshape(S, D)
  for kind, m, b in events[start:]:
    if len(hist) == K + 1:
      break
    if kind == "R":
      stash.setdefault(m, np.array(x0_SxD, np.float64).copy())[b] = x[b]
      continue
    if m not in grad:  # the microbatch's gradient, at its first update
      p = stash.get(m, np.array(x0_SxD, np.float64)).copy()
      if predict:
        p = p + h[:, None] * v
      point[m] = p
      grad[m] = (A @ p.reshape(-1) - bvec).reshape(S, D)
    g = grad[m][b]
    if lam is not None:
      g = g + lam * g * g * (x[b] - point[m][b])
    new = x[b] - gamma * g
    v[b] = new - x[b]
    x[b] = new
    hist.append(x.copy())
  return x, np.stack(hist)
