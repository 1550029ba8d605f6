"""Writes pytorch_interleaved_orders.json: per-rank compute orders of PyTorch's
``ScheduleInterleaved1F1B`` and ``ScheduleInterleavedZeroBubble`` (torch/distributed/
pipelining/schedules.py at commit 00722e648b740f91d0e71494baa17891749fd291), restated here
from that algorithm without torch: rounds ``R = max(1, M // P)`` of ``n = M // R``
microbatches; warm-up ``min((V - 1) n + f (P - 1 - rank), M V)`` forwards (``f = 2``, or 1
for zero bubble); op ``i`` forwards local stage ``(i // n) % V``, and a backward op ``i``
(counted from the end of the warm-up) uses local stage ``V - 1 - ((i - warmup) // n) % V``;
each stage takes its microbatches in order through a per-stage counter. Zero bubble splits
the backward into I and W; a W follows each I once ``rank`` backwards have run, for the
backward ``rank`` places earlier, and the missing W close the list. Only compute actions
are kept (no padding). Stage ``s`` is chunk ``s // P`` of rank ``s % P``.

Run: ``python tests/data/pytorch_interleaved_orders.py`` (no arguments).
"""
import json
import os

CASES = [(8, 6, 2), (8, 10, 2), (8, 15, 2), (5, 6, 2), (5, 24, 2), (4, 10, 2), (4, 3, 2),
         (4, 6, 3), (4, 8, 2), (3, 8, 2)]


def rank_order(P, M, V, rank, zero_bubble):
  R = max(1, M // P)
  n = M // R
  assert M % R == 0
  f = 1 if zero_bubble else 2
  warmup = min((V - 1) * n + f * (P - 1 - rank), M * V)
  total_f = M * V
  count_f, count_b, count_w = {}, {}, {}
  out, backs = [], []

  def take(counter, stage):
    counter[stage] = counter.get(stage, 0) + 1
    return counter[stage] - 1

  def fwd(i):
    stage = ((i // n) % V) * P + rank
    out.append(f"{stage}F{take(count_f, stage)}")

  def bwd(i):
    stage = (V - 1 - ((i - warmup) // n) % V) * P + rank
    out.append(f"{stage}{'I' if zero_bubble else 'B'}{take(count_b, stage)}")
    backs.append(stage)
    if zero_bubble and i - warmup >= rank:
      wstage = backs[sum(count_w.values())]
      out.append(f"{wstage}W{take(count_w, wstage)}")

  for i in range(warmup):
    fwd(i)
  for i in range(warmup, total_f):
    fwd(i)
    bwd(i)
  for i in range(total_f, total_f + warmup):
    bwd(i)
  while zero_bubble and sum(count_w.values()) < len(backs):
    wstage = backs[sum(count_w.values())]
    out.append(f"{wstage}W{take(count_w, wstage)}")
  return out


if __name__ == "__main__":
  data = {f"{kind} P={P} M={M} V={V}": [rank_order(P, M, V, r, kind == "zb") for r in range(P)]
          for kind in ("1f1b", "zb") for P, M, V in CASES}
  with open(os.path.join(os.path.dirname(os.path.abspath(__file__)),
                         "pytorch_interleaved_orders.json"), "w") as fh:
    json.dump(data, fh, indent=0)
