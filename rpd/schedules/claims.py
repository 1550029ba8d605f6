"""Claims check: numbers that pipeline-parallelism explainers quote, against the simulator.

Sources: ``/work/shared/seeds/002*`` (an explainer of pipeline parallelism) and
``/work/shared/seeds/003*`` ("The Frontier of Pipeline Parallelism", a blog post with a
survey table). Every row is measured by :func:`rpd.schedules.metrics.schedule_metrics`; the
verdict is computed by comparing the claimed number with the measurement. Definitions of
the measured quantities: :mod:`rpd.schedules.metrics`.

Regenerate ``docs/claims.md`` with ``python -m rpd.schedules.claims docs/claims.md``; a test
fails when the file is stale.
"""
from __future__ import annotations

import sys

from rpd.schedules import SCHEDULES
from rpd.schedules.metrics import schedule_metrics

CLASSIC = {"F": 1.0, "B": 1.0, "W": 0.0}   # explainers' setting: one forward, one backward
SPLIT = {"F": 1.0, "B": 1.0, "W": 1.0}     # Zero Bubble's setting T_F = T_B = T_W


def _m(name: str, P: int, M: int, V: int = 1, durations=CLASSIC) -> dict:
  return schedule_metrics(SCHEDULES[name], P, M, V, durations, tables=False)


def _pct(x: float) -> str:
  return f"{100 * x:.2f}%"


def _verdict(claimed: float, measured: float, tol: float = 0.005) -> str:
  return "holds" if abs(claimed - measured) <= tol else "does not hold"


def claims() -> list[dict]:
  """The rows ``{source, claim, measured, verdict, why}`` of the claims check."""
  rows = []

  def add(source, claim, measured, verdict, why):
    rows.append({"source": source, "claim": claim, "measured": measured, "verdict": verdict,
                 "why": why})

  g = _m("gpipe", 4, 16)
  add("002", "GPipe bubble (K-1)/M of total time; K=4, M=16: 18.75%",
      f"idle/total {_pct(g['bubble_ratio'])}; idle/compute {_pct(g['bubble_over_compute'])}",
      _verdict(0.1875, g["bubble_ratio"]) + " (as idle/total); "
      + _verdict(0.1875, g["bubble_over_compute"]) + " (as idle/compute)",
      "(K-1)/M is idle time over compute time; over the total time the bubble is "
      "(K-1)/(M+K-1) = 3/19.")
  add("002", "Bubble time = (K-1) x micro-batch time (per device)",
      f"idle per device {g['idle_per_stage'][0]:g} with F+B = 2, K-1 = 3",
      _verdict(3 * 2.0, g["idle_per_stage"][0]),
      "every device idles (K-1)(F+B) in the fill and the drain, for GPipe and 1F1B-flush.")
  o = _m("1f1b-flush", 4, 16)
  pd = _m("pipedream", 4, 16)
  add("002", "1F1B reduces the bubble to (K-1)/(M+K-1); K=4, M=16: 15.8%",
      f"1F1B-flush {_pct(o['bubble_ratio'])}, GPipe {_pct(g['bubble_ratio'])}; "
      f"PipeDream (no flush) steady {_pct(pd['steady_bubble_ratio'])}",
      _verdict(3 / 19, o["bubble_ratio"]) + " (value); "
      + ("no reduction vs GPipe" if abs(o["bubble_ratio"] - g["bubble_ratio"]) < 1e-12
         else "reduction vs GPipe"),
      "15.8% is right for 1F1B-flush but GPipe has the same bubble; the 18.75% vs 15.8% "
      "gap is two definitions of one bubble. 1F1B's gain is memory: peak activations "
      f"{o['peak_activations']} vs GPipe's {g['peak_activations']}. Only the asynchronous "
      "PipeDream (no flush) removes the bubble, at the price of staleness.")
  o8 = _m("1f1b-flush", 8, 32)
  speedup = 8 * (1 - o8["bubble_ratio"])
  add("002", "K=8, M=32 with 1F1B: 8 x 0.82 = 6.6x speedup",
      f"bubble {_pct(o8['bubble_ratio'])}, speedup 8 x {1 - o8['bubble_ratio']:.4f} = "
      f"{speedup:.3f}x",
      _verdict(6.6, round(speedup, 1), 0.05),
      "speedup = P x (1 - idle/total) = P M (F+B) / makespan, communication ignored.")
  add("002", "Activation memory = M x activation size per micro-batch",
      f"peak activations, K=4, M=16: GPipe {g['peak_activations']}, 1F1B "
      f"{o['peak_activations_per_stage']}",
      _verdict(16, g["peak_activations"]) + " for GPipe; "
      + _verdict(16, o["peak_activations"]) + " for 1F1B",
      "1F1B holds at most K - s microbatches on stage s (0-based), independent of M.")
  grid = []
  for P, M, V in [(4, 16, 2), (8, 32, 2), (8, 32, 4), (8, 64, 4), (8, 8, 2), (16, 32, 2)]:
    r = _m("interleaved-1f1b", P, M, V)
    grid.append((P, M, V, r["bubble_ratio"], (P - 1) / (V * M + P - 1)))
  inside = [x for x in grid if 0.05 <= x[3] <= 0.10]
  add("002", "Interleaved pipeline achieves 5-10% bubble",
      "; ".join(f"P={P},M={M},V={V}: {_pct(b)}" for P, M, V, b, _ in grid),
      f"holds for {len(inside)} of {len(grid)} configurations",
      "the bubble is (P-1)/(VM+P-1) (simulated: "
      + ("equal" if all(abs(b - c) < 1e-12 for *_, b, c in grid) else "NOT equal")
      + " to the closed form on every row): a function of P, M, V, not of the schedule.")
  pd8 = _m("pipedream", 8, 32)
  add("002", "Gradient staleness in 1F1B: slightly stale, generally not a problem",
      f"tau_max (block updates): 1F1B-flush {o8['tau_max']}; PipeDream K=4 {pd['tau_max']}, "
      f"K=8 {pd8['tau_max']}",
      "depends on the flush",
      "with a flush 1F1B has no staleness at all; without (PipeDream) the delay grows as "
      "S^2 - S/2 + O(1) block updates (theory/delay.py), not 'slightly'.")
  n = _m("gpipe", 4, 1)
  add("003", "Naive model parallelism: each device works 2 of 2p seconds (F = B = 1)",
      f"p=4, M=1: busy fraction {1 - n['bubble_ratio']:.4f} = 2/{2 * 4}",
      _verdict(2 / 8, 1 - n["bubble_ratio"]), "M=1 GPipe: (p-1)/p idle.")
  add("003", "GPipe and DAPPLE bubble ratio D/(D+T) (survey table)",
      f"D=4, T=16: simulated {_pct(g['bubble_ratio'])} (GPipe), {_pct(o['bubble_ratio'])} "
      f"(1F1B-flush = DAPPLE); D/(D+T) = {_pct(4 / 20)}",
      _verdict(4 / 20, g["bubble_ratio"]),
      "off by one stage: the exact bubble is (D-1)/(D-1+T).")
  i4 = _m("interleaved-1f1b", 4, 16, 2)
  add("003", "Megatron-LM (interleaved) bubble ratio D/(vT)",
      f"D=4, T=16, v=2: idle/compute {_pct(i4['bubble_over_compute'])}, idle/total "
      f"{_pct(i4['bubble_ratio'])}; D/(vT) = {_pct(4 / 32)}",
      _verdict(4 / 32, i4["bubble_over_compute"]),
      "Megatron's own formula is (D-1)/(vT) of the compute time "
      f"(= {_pct(3 / 32)}, matched), i.e. (D-1)/(vT+D-1) of the total.")
  h1 = _m("zb-h1", 4, 16, durations=SPLIT)
  o_s = _m("1f1b-flush", 4, 16, durations=SPLIT)
  add("003", "ZB-H1: bubble a third of 1F1B's, same peak memory (T_F = T_B = T_W)",
      f"per-stage bubble ZB-H1 {h1['max_stage_span_idle']:g} vs 1F1B "
      f"{o_s['max_stage_span_idle']:g}; peak activations {h1['peak_activations_per_stage']} "
      f"vs {o_s['peak_activations_per_stage']}",
      _verdict(o_s["max_stage_span_idle"] / 3, h1["max_stage_span_idle"]) + " (bubble); "
      + _verdict(o_s["peak_activations"], h1["peak_activations"]) + " (peak)",
      "(p-1)(F+B-W) vs (p-1)(F+B+W); the peak is the same on stage 0, but every ZB-H1 stage "
      "holds p activations where 1F1B stage s holds p-s.")
  h2 = _m("zb-h2", 4, 16, durations=SPLIT)
  add("003", "ZeroBubble (ZB-H2): bubble ratio 0, more memory",
      f"inside each stage's span {h2['max_stage_span_idle']:g}; over the makespan "
      f"{_pct(h2['bubble_ratio'])}; peak activations {h2['peak_activations']} (2p-1) vs "
      f"1F1B {o_s['peak_activations']}",
      _verdict(0.0, h2["max_stage_span_idle"]) + " inside the parallelogram; "
      + _verdict(0.0, h2["bubble_ratio"]) + " over the makespan",
      "zero only inside each stage's own span: the parallelogram overlaps with the next "
      "iteration only when the optimizer synchronisation is bypassed (post-validation); "
      "needs M >= 2p-1.")
  asyncs = {s: _m(s, 4, 16) for s in ("pipedream", "pipedream-2bw", "pipemare")}
  add("003", "PipeDream, PipeDream-2BW, PipeMare (async): bubble ratio 0",
      "; ".join(f"{s}: steady {_pct(r['steady_bubble_ratio'])}, tau_max {r['tau_max']}"
                for s, r in asyncs.items()),
      "holds" if all(r["steady_bubble_ratio"] == 0 for r in asyncs.values())
      else "does not hold",
      "in continuous operation (no flush) every device is busy; the price is staleness "
      "(tau_max in block updates).")
  add("003", "GPipe stores one version of weights; PipeDream one per in-flight mini-batch",
      f"weight versions per stage: GPipe {g['weight_versions_per_stage']}, PipeDream "
      f"{pd['weight_versions_per_stage']}, 2BW {asyncs['pipedream-2bw']['weight_versions']},"
      f" PipeMare {asyncs['pipemare']['weight_versions']}",
      _verdict(1, g["weight_versions"]) + " (GPipe); "
      + ("holds" if pd["weight_versions_per_stage"] == pd["peak_activations_per_stage"]
         else "does not hold") + " (PipeDream: versions = in-flight microbatches)",
      "PipeDream stage s keeps K - s versions (0-based), one per in-flight microbatch.")
  c = _m("chimera", 4, 16)
  add("003", "Chimera bubble D/(D+2T)",
      f"D=4, T=16: simulated {_pct(c['bubble_ratio'])} (makespan {c['makespan']:g} = 2T+D-2); "
      f"D/(D+2T) = {_pct(4 / 36)}; (D-2)/(2T+D-2) = {_pct(2 / 34)}",
      _verdict(4 / 36, c["bubble_ratio"]) + " (survey); "
      + _verdict(2 / 34, c["bubble_ratio"]) + " (Chimera paper, Table 1)",
      "the two pipelines fill each other's bubbles: D-2 idle slots per device, not D (the "
      "paper's (D-2)/(2N+D-2) for F = B); the price is two weight replicas per device "
      f"(weight memory {c['weight_memory']:g} device-shares) and {c['peak_activations']} "
      "activations (D, as 1F1B).")
  return rows


def markdown() -> str:
  """The claims table as a markdown document."""
  lines = [
      "# Claims check: pipeline-parallelism numbers against the simulator",
      "",
      "Generated by `python -m rpd.schedules.claims docs/claims.md` (do not edit; "
      "`tests/test_schedules_claims.py` fails when this file is stale). K or D = stages, "
      "M or T = microbatches, v = chunks. Durations F = B = 1 (W = 0) unless the row is "
      "about Zero Bubble (F = B = W = 1). bubble = idle / (P x makespan) unless stated; "
      "definitions in `rpd/schedules/metrics.py`. Sources: `seeds/002*` (explainer), "
      "`seeds/003*` (blog post with a survey table).",
      "",
      "| # | source | claim | simulator | verdict | why |",
      "|---|---|---|---|---|---|",
  ]
  for k, r in enumerate(claims(), 1):
    cells = [str(k), r["source"], r["claim"], r["measured"], r["verdict"], r["why"]]
    lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
  return "\n".join(lines) + "\n"


if __name__ == "__main__":
  text = markdown()
  if len(sys.argv) > 1:
    with open(sys.argv[1], "w") as f:
      f.write(text)
  else:
    sys.stdout.write(text)
