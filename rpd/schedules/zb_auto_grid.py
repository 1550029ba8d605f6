"""zb-auto against the hand-made schedules on the issue's grid (the README's numbers).

``python -m rpd.schedules.zb_auto_grid [--exact SECONDS] [--no-seeds] [--json]``

Grid: ``P`` in {2, 4, 8}, ``M`` in {P, 2P, 4P}, ``(F, B, W)`` in {(1,1,1), (2,3,1), (1,2,1)},
memory limits ``L`` in {P, 2P - 1, 2P} (81 cells; rpd's memory model). Per cell: zb-auto's
makespan, the best registered synchronous schedule that fits ``L`` (activation memory in
device-shares) among (a) one chunk and one weight copy per device (zb-auto's own placement),
(b) Chimera (two weight replicas) and (c) the ``V = 2`` schedules; with ``--exact`` the
exact step's status and proved bound. ``--no-seeds`` runs the heuristic alone (what zb-auto
was before its seeds). Prints the counts the README quotes. About 10 s of CPU without
``--exact``; with ``--exact 5`` up to 5 s more per open cell.
"""
from __future__ import annotations

import argparse
import itertools
import json

from rpd.schedules import SCHEDULES, ScheduleNotApplicable
from rpd.schedules.metrics import schedule_metrics
from rpd.schedules.zb_auto import ZBAuto

GRID_P = (2, 4, 8)
GRID_K = (1, 2, 4)
GRID_DUR = ((1, 1, 1), (2, 3, 1), (1, 2, 1))


class _Unseeded(ZBAuto):
  """zb-auto without the hand-made seeds (for the before/after count)."""

  def _search(self, P, M, given, latency):
    import rpd.schedules.zb_auto as z
    saved = z.split_backward_order
    z.split_backward_order = lambda acts: (_ for _ in ()).throw(ScheduleNotApplicable("off"))
    try:
      return super()._search(P, M, given, latency)
    finally:
      z.split_backward_order = saved


def grid(exact: float | None = None, seeds: bool = True) -> list[dict]:
  """One row per cell (see the module docstring)."""
  rows = []
  for P, k, dur in itertools.product(GRID_P, GRID_K, GRID_DUR):
    M = k * P
    d = dict(zip("FBW", map(float, dur)))
    hand = []
    for name, s in SCHEDULES.items():
      if name.startswith("zb-auto") or not s.semantics.synchronous:  # hand-made only
        continue
      V = 2 if s.chunked else 1
      try:
        r = schedule_metrics(s, P, M, V, d, tables=False)
      except ScheduleNotApplicable:
        continue
      group = "chunked" if s.chunked else "replicas" if s.replicas > 1 else "one_chunk"
      hand.append((group, name, r["makespan"], r["activation_memory"]))
    for L in (P, 2 * P - 1, 2 * P):
      auto = (ZBAuto if seeds else _Unseeded)(L, exact=exact is not None,
                                              time_limit=exact or 2.0)
      span = auto.search(P, M, d)[0]
      row = {"P": P, "M": M, "F": dur[0], "B": dur[1], "W": dur[2], "limit": L,
             "zb_auto": span}
      for group in ("one_chunk", "replicas", "chunked"):
        fits = [(m, n) for g, n, m, a in hand if g == group and a <= L + 1e-9]
        row[group] = min(fits) if fits else None
      if auto.last_exact is not None:
        row["exact"] = dict(auto.last_exact.__dict__)
      rows.append(row)
  return rows


def summary(rows: list[dict]) -> dict:
  """Counts of cells where a hand-made schedule of each group is faster than zb-auto, and
  of the exact step's outcomes."""
  out = {"cells": len(rows)}
  for group in ("one_chunk", "replicas", "chunked"):
    out[f"loses_to_{group}"] = sum(1 for r in rows if r[group] and r[group][0] < r["zb_auto"] - 1e-9)
  ex = [r["exact"] for r in rows if "exact" in r]
  if ex:
    ran = [e for e in ex if not e["status"].startswith("skipped")]
    out["exact_cells"] = len(ran)
    out["exact_proved_optimal"] = sum(1 for e in ran if e["status"].startswith("optimal"))
    out["exact_open"] = sum(1 for e in ran if e["status"] == "time limit")
    out["exact_improved"] = sum(1 for e in ran if e["makespan"] is not None
                                and e["makespan"] < e["heuristic"] - 1e-9)
  return out


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--exact", type=float, default=None, metavar="SECONDS")
  ap.add_argument("--no-seeds", action="store_true")
  ap.add_argument("--json", action="store_true")
  args = ap.parse_args(argv)
  rows = grid(args.exact, not args.no_seeds)
  if args.json:
    print(json.dumps({"summary": summary(rows), "rows": rows}))
    return 0
  for r in rows:
    e = r.get("exact")
    ex = "" if not e else (f"  exact: {e['status']}, bound {e['bound']:.6g}"
                           + ("" if e["makespan"] is None else f", solver {e['makespan']:g}"))
    print(f"P={r['P']} M={r['M']:<3} F,B,W={r['F']},{r['B']},{r['W']} L={r['limit']:<3} "
          f"zb-auto {r['zb_auto']:<6g} one-chunk {r['one_chunk']} replicas {r['replicas']} "
          f"V=2 {r['chunked']}{ex}")
  print(json.dumps(summary(rows)))
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
