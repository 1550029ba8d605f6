"""``rpd schedules``: every registered schedule as a simulated timeline, with its metrics."""
from __future__ import annotations

import argparse

from rpd import jsonout
from rpd.cli import positive_int
from rpd.errors import InputError
from rpd.schedules.memory import parse_memory_model

NAME = "schedules"
HELP = "bubble, memory, weight versions and staleness of every pipeline schedule"


def parse_durations(text: str) -> dict[str, float]:
  """Parse ``"F=1,B=2,W=0.5"`` (any subset of F, B, W, FB) into a dict (``FB``: the time of
  DualPipe-V's overlapped forward + full backward pair, used by ``dualpipe-v`` only).

  Raises:
    InputError: naming the bad entry (unknown kind, not a number, F or B <= 0, W < 0).
  """
  out: dict[str, float] = {}
  for part in filter(None, (p.strip() for p in text.split(","))):
    kind, sep, value = part.partition("=")
    kind = kind.strip().upper()
    if not sep or kind not in ("F", "B", "W", "FB"):
      raise InputError(f"--durations entry {part!r} is not KIND=VALUE with KIND in F, B, W, FB")
    try:
      v = float(value)
    except ValueError:
      raise InputError(f"--durations {kind} must be a number, got {value!r}") from None
    if not v == v or v in (float("inf"),) or v < 0 or (v == 0 and kind != "W"):
      raise InputError(f"--durations {kind} must be {'>= 0' if kind == 'W' else '> 0'}"
                       f" and finite, got {value!r}")
    if kind in out:
      raise InputError(f"--durations gives {kind} twice ({part!r})")
    out[kind] = v
  return out


_BUDGET_KEYS = {"act": "activations", "activations": "activations", "weights": "weights"}


def parse_memory(text: str | None) -> dict[str, float]:
  """Parse ``--memory "act=6,weights=2"`` (device-shares; either key may be left out).

  Raises:
    InputError: naming the bad entry (unknown or repeated key, not a number, <= 0).
  """
  out: dict[str, float] = {}
  for part in filter(None, (p.strip() for p in (text or "").split(","))):
    key, sep, value = part.partition("=")
    name = _BUDGET_KEYS.get(key.strip().lower())
    if not sep or name is None:
      raise InputError(f"--memory entry {part!r} is not act=VALUE or weights=VALUE")
    try:
      v = float(value)
    except ValueError:
      raise InputError(f"--memory {key.strip()} must be a number, got {value!r}") from None
    if not (v >= 1 and v != float("inf")):
      raise InputError(f"--memory {key.strip()} must be finite and >= 1 (one microbatch's "
                       f"activations, one weight copy), got {value!r}")
    if name in out:
      raise InputError(f"--memory gives {key.strip()} twice ({part!r})")
    out[name] = v
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
                      "gradient; unsplit schedules run B+W as one backward; FB = DualPipe-V's "
                      "overlapped forward + full backward pair, default F+B+W back to back)")
  p.add_argument("--latency", default="0", help="point-to-point latency (>= 0, default 0)")
  p.add_argument("--schedule", action="append", default=None,
                 help="only this schedule (repeatable); default all")
  p.add_argument("--plot", metavar="FILE.png", default=None,
                 help="draw a timeline per schedule into FILE.png")
  p.add_argument("--pareto", action="store_true",
                 help="choose: the frontier over bubble, activation and weight memory and "
                      "staleness (versions); dominated and over-budget schedules marked")
  p.add_argument("--memory", default=None, metavar="act=A,weights=W",
                 help="with --pareto: memory budget per device in device-shares "
                      "(activations of A microbatches, W weight copies); also runs the "
                      "automatic zero-bubble search at in-flight limit floor(A)")
  p.add_argument("--max-staleness", type=float, default=None, metavar="VERSIONS",
                 help="with --pareto: largest tolerated delay in versions (optimizer steps)")
  p.add_argument("--json", action="store_true", help="print JSON (a list of objects; with --pareto one object); NaN "
                 "and +-Infinity are written as null")
  p.add_argument("--memory-model", default="rpd", metavar="rpd|zb|zb:R",
                 help="activation memory accounting: rpd (default: a microbatch's activations "
                      "count whole from F to the end of W) or zb (the Zero Bubble paper's: B "
                      "frees M_B - M_W, a pending W holds M_W = R M_B; zb alone: R = 0.4324, "
                      "the authors' GPT setting); used by the peak memory column, --pareto, "
                      "--memory and zb-auto's limit")
  p.add_argument("--exact", type=float, default=None, metavar="SECONDS",
                 help="zb-auto: after its seeded search, run the exact step (a MILP, HiGHS) "
                      "for at most SECONDS (0 < SECONDS <= 60) when P and M are small; prints "
                      "the lower bound it proves")


def _latency(text: str) -> float:
  try:
    v = float(text)
  except ValueError:
    raise InputError(f"--latency must be a number >= 0, got {text!r}") from None
  if not (v >= 0 and v != float("inf")):
    raise InputError(f"--latency must be a finite number >= 0, got {text!r}")
  return v


def collect(P: int, M: int, V: int, durations: dict, latency: float,
            names: list[str] | None = None, exact: float | None = None,
            memory=None) -> list[dict]:
  """Metrics of every (selected) schedule; a schedule that does not apply is reported
  as ``{"schedule": name, "skipped": reason}``. With ``exact`` (seconds), zb-auto runs its
  exact step and its row gets ``exact`` (status, makespan, proved bound, heuristic)."""
  import dataclasses

  from rpd.schedules import SCHEDULES, ScheduleNotApplicable
  from rpd.schedules.metrics import schedule_metrics
  from rpd.schedules.zb_auto import ZBAuto
  out = []
  for name in names or list(SCHEDULES):
    s = SCHEDULES[name]
    if isinstance(s, ZBAuto) and (exact is not None or memory is not None):
      s = type(s)(s.limit, exact=exact is not None, time_limit=exact or 2.0, memory=memory)
    v = V if s.chunked else 1
    try:
      row = schedule_metrics(s, P, M, v, durations, latency, memory=memory)
    except ScheduleNotApplicable as e:
      out.append({"schedule": name, "semantics": s.semantics.name, "skipped": str(e)})
      continue
    if isinstance(s, ZBAuto) and s.exact:
      s.search(P, M, row["durations"], latency)  # cached: the exact step of this row
      if s.last_exact is not None:  # zb-auto-v has no exact step
        row["exact"] = dataclasses.asdict(s.last_exact)
    out.append(row)
  return out


def print_exact(rows: list[dict]) -> None:
  """One line per row that ran zb-auto's exact step: status, makespans and proved bound."""
  for r in rows:
    e = r.get("exact")
    if e:
      found = "none" if e["makespan"] is None else f"{e['makespan']:g}"
      print(f"{r['schedule']}: exact step {e['status']} ({e['binaries']} order variables, "
            f"{e['seconds']:.2f} s): heuristic {e['heuristic']:g}, solver {found}, proved "
            f"lower bound {e['bound']:.6g}")


def check_sizes(args, names) -> None:
  """Sizes and output path of ``rpd schedules``, checked before any work."""
  from rpd.guards import FIGURE_SUFFIXES, check_output_file, check_schedule_size
  from rpd.schedules import SCHEDULES
  chunked = any(SCHEDULES[n].chunked for n in (names or SCHEDULES))
  check_schedule_size(args.stages, args.microbatches, args.chunks if chunked else 1)
  if args.plot is not None:
    check_output_file(args.plot, "--plot", FIGURE_SUFFIXES)
  if args.exact is not None and not 0 < args.exact <= 60:
    raise InputError(f"--exact must be a number of seconds in (0, 60], got {args.exact:g}")


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


def frontier_layout(rows: list[dict]) -> list[tuple[float, float, int, float]]:
  """Marker positions and numbers for the frontier plot: ``(x, y, n, angle)`` per applicable
  row.

  ``x`` = activations, ``y`` = bubble in %. Rows at the same point are spread on a small
  circle around it (radius 4% of the axis ranges), so no marker hides another, and their
  number is written outward at ``angle`` (radians; ``pi/4`` for a lone point); ``n``
  (1, 2, ...) numbers the rows in order, for the table beside the plot.
  """
  import math
  live = [r for r in rows if "skipped" not in r]
  xs = [r["activations"] for r in live]
  ys = [100 * r["bubble"] for r in live]
  sx = max(max(xs) - min(xs), 1.0) if xs else 1.0
  sy = max(max(ys) - min(ys), 1.0) if ys else 1.0
  groups: dict = {}
  for i, (x, y) in enumerate(zip(xs, ys)):
    groups.setdefault((round(x, 6), round(y, 6)), []).append(i)
  out = [None] * len(live)
  for (x, y), members in groups.items():
    k = len(members)
    for j, i in enumerate(members):
      a = 2 * math.pi * j / k + math.pi / 4
      rad = 0.0 if k == 1 else 0.04
      out[i] = (x + rad * sx * math.cos(a), y + rad * sy * math.sin(a), i + 1, a)
  return out


def plot_frontier(rows: list[dict], title: str, path: str) -> None:
  """Scatter of bubble against activation memory; colour = staleness (versions), marker by
  status (frontier filled, dominated hollow, over budget a cross). Every point carries a
  number (coincident points are spread apart, :func:`frontier_layout`) and a table beside
  the plot lists the numbered rows, so no label collides with another."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  live = [r for r in rows if "skipped" not in r]
  if not live:
    raise InputError("no schedule applies to these options; nothing to plot")
  fig, (ax, tab) = plt.subplots(1, 2, figsize=(13, 6), gridspec_kw={"width_ratios": [3, 2]})
  vmax = max(1.0, max(r["staleness"] for r in live))
  cmap = plt.get_cmap("viridis")
  import math
  for r, (x, y, n, a) in zip(live, frontier_layout(live)):
    col = cmap(r["staleness"] / vmax)
    if r["status"] == "frontier":
      ax.scatter(x, y, s=80, color=col, edgecolor="k", zorder=3)
    elif r["status"] == "dominated":
      ax.scatter(x, y, s=80, facecolor="none", edgecolor=col, linewidth=1.5, zorder=2)
    else:
      ax.scatter(x, y, s=80, marker="x", color=col, zorder=2)
    ax.annotate(str(n), (x, y), fontsize=7, ha="center", va="center",
                xytext=(11 * math.cos(a), 11 * math.sin(a)), textcoords="offset points")
  ax.margins(x=0.15, y=0.15)
  sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, vmax))
  fig.colorbar(sm, ax=ax, label="staleness: delay in versions")
  ax.set_xlabel("peak activations per device (microbatch device-shares)")
  ax.set_ylabel("bubble (% idle, continuous operation)")
  ax.set_title(title + "\nfilled: frontier, hollow: dominated, x: over budget; points at "
               "the same place are spread apart", fontsize=8)
  tab.axis("off")
  lines = [f"{'#':>2} {'schedule':<20}{'act':>6}{'bub%':>7}{'w':>4}{'v':>4}  status"]
  for r, (_, _, n, _) in zip(live, frontier_layout(live)):
    lines.append(f"{n:>2} {r['schedule'][:20]:<20}{r['activations']:>6.3g}"
                 f"{100 * r['bubble']:>7.2f}{r['weights']:>4.3g}{r['staleness']:>4.3g}  "
                 f"{r['status']}")
  tab.text(0.0, 1.0, "\n".join(lines), family="monospace", fontsize=7, va="top",
           transform=tab.transAxes)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run_pareto(args, P: int, M: int, V: int, durations: dict, latency: float,
               names: list[str] | None) -> int:
  """``--pareto``: the frontier table (or JSON), optionally the plot."""
  from rpd.schedules import ScheduleNotApplicable
  from rpd.schedules.metrics import DELAY_CONVENTION, schedule_metrics
  from rpd.schedules.pareto import frontier
  from rpd.schedules.zb_auto import ZBAuto
  if args.max_staleness is not None and not (args.max_staleness >= 0
                                             and args.max_staleness != float("inf")):
    raise InputError(f"--max-staleness must be a finite number >= 0, got {args.max_staleness}")
  budget = parse_memory(args.memory)
  if args.max_staleness is not None:
    budget["staleness"] = args.max_staleness
  memory = parse_memory_model(args.memory_model)
  rows = collect(P, M, V, durations, latency, names, args.exact, memory)
  limit = budget.get("activations")
  if limit and limit != 2 * P - 1 and (not names or "zb-auto" in names):
    name = f"zb-auto(limit={limit:g})"
    auto = ZBAuto(limit, exact=args.exact is not None, time_limit=args.exact or 2.0,
                  memory=memory)
    try:
      r = schedule_metrics(auto, P, M, 1, durations, latency, tables=False, memory=memory)
      r["schedule"] = name
      if auto.exact:
        import dataclasses
        auto.search(P, M, r["durations"], latency)  # cached: the exact step of this row
        r["exact"] = dataclasses.asdict(auto.last_exact)
      rows.append(r)
    except ScheduleNotApplicable as e:
      rows.append({"schedule": name, "semantics": auto.semantics.name, "skipped": str(e)})
  marked = frontier(rows, budget)
  if args.plot:
    plot_frontier(marked, f"P = {P}, M = {M}, durations {durations or 'F=B=W=1'}", args.plot)
  if args.json:
    print(jsonout.dumps({"P": P, "M": M, "V": V, "durations": durations, "latency": latency,
                 "budget": budget, "memory_model": memory.name, "delay_convention": DELAY_CONVENTION, "rows": marked}))
    return 0
  print(f"P = {P} devices, M = {M} microbatches, V = {V} chunks (chunked schedules), "
        f"durations {durations or 'F=B=W=1'}, latency {latency:g}, budget "
        f"{budget or 'none'}, memory model {memory.name}")
  head = (f"{'schedule':<22}{'bubble':>8}{'act':>7}{'weights':>8}{'versions':>9}"
          f"{'tau_max':>8}  status")
  print(head)
  print("-" * (len(head) + 20))
  for r in marked:
    if "skipped" in r:
      print(f"{r['schedule']:<22}skipped: {r['skipped']}")
      continue
    why = (f" ({', '.join(r['over'])})" if r["status"] == "over budget" else
           f" (by {', '.join(r['dominated_by'])})" if r["status"] == "dominated" else "")
    print(f"{r['schedule']:<22}{100 * r['bubble']:>7.2f}%{r['activations']:>7.3g}"
          f"{r['weights']:>8.3g}{r['staleness']:>9.3g}{r['tau_max']:>8}  {r['status']}{why}")
  print("bubble = idle fraction in continuous operation; act = peak activations per device "
        "and weights = weight copies per device, both in device-shares; versions = delay in "
        "versions (optimizer steps); tau_max = delay in block updates. " + DELAY_CONVENTION)
  print_exact(marked)
  if args.plot:
    print(f"frontier plot written to {args.plot}")
  return 0


def run(args) -> int:
  """Simulate every schedule, print the table (or JSON), optionally plot."""
  from rpd.schedules import SCHEDULES
  from rpd.schedules.metrics import DELAY_CONVENTION
  durations = parse_durations(args.durations)
  latency = _latency(args.latency)
  names = args.schedule
  if names:
    bad = [n for n in names if n not in SCHEDULES]
    if bad:
      raise InputError(f"unknown schedule {bad[0]!r}; known: {', '.join(SCHEDULES)}")
  P, M, V = args.stages, args.microbatches, args.chunks
  check_sizes(args, names)
  parse_memory_model(args.memory_model)
  if args.pareto:
    return run_pareto(args, P, M, V, durations, latency, names)
  if args.memory is not None or args.max_staleness is not None:
    raise InputError("--memory and --max-staleness go with --pareto")
  memory = parse_memory_model(args.memory_model)
  rows = collect(P, M, V, durations, latency, names, args.exact, memory)
  if args.plot:
    plot_timelines(P, M, V, durations, latency, rows, args.plot)
  if args.json:
    print(jsonout.dumps(rows))
    return 0
  print(f"P = {P} devices, M = {M} microbatches, V = {V} chunks (interleaved only), "
        f"durations {durations or 'F=B=W=1'}, latency {latency:g}, memory model {memory.name}")
  head = (f"{'schedule':<17}{'semantics':<16}{'makespan':>9}{'bubble':>8}{'b/comp':>8}"
          f"{'steady':>8}{'peak act':>9}{'peak mem':>9}{'versions':>9}{'tau_max':>8}"
          f"{'tau_ver':>8}")
  print(head)
  print("-" * len(head))
  for r in rows:
    if "skipped" in r:
      print(f"{r['schedule']:<17}{r['semantics']:<16}skipped: {r['skipped']}")
      continue
    print(f"{r['schedule']:<17}{r['semantics']:<16}{r['makespan']:>9.4g}"
          f"{100 * r['bubble_ratio']:>7.2f}%{100 * r['bubble_over_compute']:>7.2f}%"
          f"{100 * r['steady_bubble_ratio']:>7.2f}%{r['peak_activations']:>9}"
          f"{r['peak_memory']:>9.4g}"
          f"{r['weight_versions']:>9}{r['tau_max']:>8}{r['tau_versions_max']:>8}"
          f"{'' if r['tau_steady'] else '*'}")
  print("bubble = idle / (P * makespan); b/comp = idle / compute; steady = bubble in "
        "continuous operation (no flush); peak act = microbatch activations held (F start to "
        "last backward end); peak mem = the same under the memory model (units of one "
        "microbatch's M_B; zb: B frees M_B - M_W); versions = weight versions of a block kept; tau_max = delay in "
        "block updates, tau_ver = delay in versions (optimizer steps); * = the delay table "
        "varies between microbatches (no steady state), the entrywise maximum is shown. "
        "Delays depend on the durations (PipeDream S = 6: tau_max 33 with B = F, 34 with "
        "B = 2F). Convention: " + DELAY_CONVENTION)
  print_exact(rows)
  if args.plot:
    print(f"timelines written to {args.plot}")
  return 0
