"""``rpd schedules``: every registered schedule as a simulated timeline, with its metrics."""
from __future__ import annotations

import argparse
import json

from rpd.cli import positive_int
from rpd.errors import InputError

NAME = "schedules"
HELP = "bubble, memory, weight versions and staleness of every pipeline schedule"


def parse_durations(text: str) -> dict[str, float]:
  """Parse ``"F=1,B=2,W=0.5"`` (any subset of F, B, W) into a dict.

  Raises:
    InputError: naming the bad entry (unknown kind, not a number, F or B <= 0, W < 0).
  """
  out: dict[str, float] = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    kind, sep, value = part.partition("=")
    kind = kind.strip().upper()
    if not sep or kind not in ("F", "B", "W"):
      raise InputError(f"--durations entry {part!r} is not KIND=VALUE with KIND in F, B, W")
    try:
      v = float(value)
    except ValueError:
      raise InputError(f"--durations {kind} must be a number, got {value!r}") from None
    if not v == v or v in (float("inf"),) or v < 0 or (v == 0 and kind != "W"):
      raise InputError(f"--durations {kind} must be {'>= 0' if kind == 'W' else '> 0'}"
                       f" and finite, got {value!r}")
    out[kind] = v
  return out


def add_arguments(p: argparse.ArgumentParser) -> None:
  """Options of ``rpd schedules``."""
  p.add_argument("--stages", "-P", type=positive_int("--stages"), required=True,
                 help="number of pipeline devices P (integer >= 1)")
  p.add_argument("--microbatches", "-M", type=positive_int("--microbatches"), required=True,
                 help="microbatches per batch M (integer >= 1)")
  p.add_argument("--chunks", "-V", type=positive_int("--chunks"), default=2,
                 help="model chunks per device for interleaved schedules (default 2; "
                      "the others hold one)")
  p.add_argument("--durations", default="F=1,B=1,W=1",
                 help="per-block durations, e.g. F=1,B=1,W=1 (B = input gradient, W = weight "
                      "gradient; unsplit schedules run B+W as one backward)")
  p.add_argument("--latency", default="0", help="point-to-point latency (>= 0, default 0)")
  p.add_argument("--schedule", action="append", default=None,
                 help="only this schedule (repeatable); default all")
  p.add_argument("--plot", metavar="FILE.png", default=None,
                 help="draw a timeline per schedule into FILE.png")
  p.add_argument("--json", action="store_true", help="print a JSON list of objects")


def _latency(text: str) -> float:
  try:
    v = float(text)
  except ValueError:
    raise InputError(f"--latency must be a number >= 0, got {text!r}") from None
  if not (v >= 0 and v != float("inf")):
    raise InputError(f"--latency must be a finite number >= 0, got {text!r}")
  return v


def collect(P: int, M: int, V: int, durations: dict, latency: float,
            names: list[str] | None = None) -> list[dict]:
  """Metrics of every (selected) schedule; a schedule that does not apply is reported
  as ``{"schedule": name, "skipped": reason}``."""
  from rpd.schedules import SCHEDULES, ScheduleNotApplicable
  from rpd.schedules.metrics import schedule_metrics
  out = []
  for name in names or list(SCHEDULES):
    s = SCHEDULES[name]
    v = V if s.chunked else 1
    try:
      out.append(schedule_metrics(s, P, M, v, durations, latency))
    except ScheduleNotApplicable as e:
      out.append({"schedule": name, "semantics": s.semantics, "skipped": str(e)})
  return out


def plot_timelines(P: int, M: int, V: int, durations: dict, latency: float, rows: list[dict],
                   path: str) -> None:
  """Draw one timeline per applicable schedule (devices as rows, colour by kind)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  from rpd.schedules import SCHEDULES
  from rpd.schedules.core import block_of
  from rpd.schedules.metrics import timing_durations

  live = [r for r in rows if "skipped" not in r]
  if not live:
    raise InputError("no schedule applies to these options; nothing to plot")
  colours = {"F": "#4C72B0", "B": "#DD8452", "W": "#55A868"}
  fig, axes = plt.subplots(len(live), 1, figsize=(14, 1.0 + 0.45 * P * len(live)),
                           squeeze=False)
  for ax, r in zip(axes[:, 0], live):
    s = SCHEDULES[r["schedule"]]
    timed = s.timed(P, M, r["V"], timing_durations(s, durations, r["V"]), latency)
    for p, acts in enumerate(timed.actions):
      for a in acts:
        key = (a.kind, a.microbatch, block_of(a, P))
        t0, t1 = timed.start[key], timed.end[key]
        if t1 <= t0:
          continue
        ax.barh(p, t1 - t0, left=t0, height=0.85, color=colours[a.kind],
                alpha=1.0 if a.chunk == 0 else 0.6, edgecolor="white", linewidth=0.5)
        label = str(a.microbatch) if r["V"] == 1 else f"{a.microbatch}.{a.chunk}"
        if (t1 - t0) * 60 / max(timed.makespan, 1e-9) >= 0.35 * len(label):
          ax.text((t0 + t1) / 2, p, label, ha="center", va="center", fontsize=6,
                  color="white")
    ax.set_ylim(P - 0.5, -0.5)
    ax.set_yticks(range(P))
    ax.set_yticklabels([f"dev {p}" for p in range(P)], fontsize=7)
    ax.set_title(f"{r['schedule']} ({r['semantics']}): makespan {r['makespan']:g}, bubble "
                 f"{100 * r['bubble_ratio']:.1f}%, peak act. {r['peak_activations']}, "
                 f"versions {r['weight_versions']}, tau_max {r['tau_max']}", fontsize=8)
  axes[-1, 0].set_xlabel("time")
  handles = [matplotlib.patches.Patch(color=c, label=k) for k, c in colours.items()]
  fig.legend(handles=handles, loc="upper right", fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(args) -> int:
  """Simulate every schedule, print the table (or JSON), optionally plot."""
  from rpd.schedules import SCHEDULES
  durations = parse_durations(args.durations)
  latency = _latency(args.latency)
  names = args.schedule
  if names:
    bad = [n for n in names if n not in SCHEDULES]
    if bad:
      raise InputError(f"unknown schedule {bad[0]!r}; known: {', '.join(SCHEDULES)}")
  P, M, V = args.stages, args.microbatches, args.chunks
  rows = collect(P, M, V, durations, latency, names)
  if args.plot:
    plot_timelines(P, M, V, durations, latency, rows, args.plot)
  if args.json:
    print(json.dumps(rows))
    return 0
  print(f"P = {P} devices, M = {M} microbatches, V = {V} chunks (interleaved only), "
        f"durations {durations or 'F=B=W=1'}, latency {latency:g}")
  head = (f"{'schedule':<17}{'semantics':<16}{'makespan':>9}{'bubble':>8}{'b/comp':>8}"
          f"{'steady':>8}{'peak act':>9}{'versions':>9}{'tau_max':>8}")
  print(head)
  print("-" * len(head))
  for r in rows:
    if "skipped" in r:
      print(f"{r['schedule']:<17}{r['semantics']:<16}skipped: {r['skipped']}")
      continue
    print(f"{r['schedule']:<17}{r['semantics']:<16}{r['makespan']:>9.4g}"
          f"{100 * r['bubble_ratio']:>7.2f}%{100 * r['bubble_over_compute']:>7.2f}%"
          f"{100 * r['steady_bubble_ratio']:>7.2f}%{r['peak_activations']:>9}"
          f"{r['weight_versions']:>9}{r['tau_max']:>8}{'' if r['tau_steady'] else '*'}")
  print("bubble = idle / (P * makespan); b/comp = idle / compute; steady = bubble in "
        "continuous operation (no flush); peak act = microbatch activations held (F start to "
        "last backward end); versions = weight versions of a block kept; tau_max in block "
        "updates (rpd.schedules.core conventions); * = the delay table varies between "
        "microbatches (no steady state), the entrywise maximum is shown.")
  if args.plot:
    print(f"timelines written to {args.plot}")
  return 0
