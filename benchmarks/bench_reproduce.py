"""Where the time of ``rpd reproduce --quick`` goes: per experiment wall, CPU, compile, programs.

Command (recorded with its output in BENCHMARKS.md):

    python benchmarks/bench_reproduce.py [--full] [--only NAMES] [--jobs N] [--warm]
                                         [--no-cache] [--json FILE]

Runs ``rpd reproduce --quick --no-progress`` into a new temporary folder, in a child process
with an empty persistent compilation cache of its own (``RPD_CACHE_DIR`` = a new temporary
folder: a fresh clone's first run), and prints per experiment:

- wall: seconds of ``driver.run`` + ``driver.plot`` (the README's per-experiment runtime);
- cpu: user + system seconds of the process over the same span (all threads);
- trace: seconds tracing Python to jaxprs and lowering them to MLIR
  (``/jax/core/compile/jaxpr_trace_duration`` + ``jaxpr_to_mlir_module_duration``);
- compile: seconds in XLA's backend compile, cache reads included
  (``/jax/core/compile/backend_compile_duration``);
- programs: number of backend compiles (distinct compiled programs), and how many of them
  the persistent cache served (``/jax/compilation_cache/cache_hits``).

Then the totals of the run (the child's wall and CPU, interpreter start and imports included)
next to the times stated in README.md (first paragraph) and paper_figures/README.md. With
``--warm`` it runs a second time into another new folder with the cache the first run filled
(the second run of a user). Wall times depend on the load of the machine; CPU time and the
program counts do much less. ``--jobs N`` is passed to ``rpd reproduce`` (default: its own,
``min(2, cores)`` experiments at once): with more than one, experiments overlap, so their
cpu, trace and compile columns each count everything the process did meanwhile; use
``--jobs 1`` for the per-experiment split, the default for the total a user sees.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "trace",
          "/jax/core/compile/backend_compile_duration": "compile"}


def _cpu_self() -> float:
  r = resource.getrusage(resource.RUSAGE_SELF)
  return r.ru_utime + r.ru_stime


def child(argv: list[str], stats_path: str) -> int:
  """Run ``rpd`` with ``argv`` in this process, timing each experiment; write the stats."""
  import importlib

  import jax.monitoring as mon

  acc = {"trace": 0.0, "compile": 0.0, "programs": 0, "cache_hits": 0}

  def on_duration(event, secs, **_):
    kind = EVENTS.get(event)
    if kind:
      acc[kind] += secs
      if event.endswith("backend_compile_duration"):
        acc["programs"] += 1

  def on_event(event, **_):
    if event == "/jax/compilation_cache/cache_hits":
      acc["cache_hits"] += 1

  mon.register_event_duration_secs_listener(on_duration)
  mon.register_event_listener(on_event)

  from rpd.cli.reproduce import EXPERIMENTS
  per: dict[str, dict] = {}

  def wrap(name, module, attr):
    fn = getattr(module, attr)

    def timed(*a, **k):
      t0, c0, s0 = time.time(), _cpu_self(), dict(acc)
      try:
        return fn(*a, **k)
      finally:
        e = per.setdefault(name, {"wall": 0.0, "cpu": 0.0, "trace": 0.0, "compile": 0.0,
                                  "programs": 0, "cache_hits": 0, "configs": 0})
        e["wall"] += time.time() - t0
        e["cpu"] += _cpu_self() - c0
        for key in ("trace", "compile", "programs", "cache_hits"):
          e[key] += acc[key] - s0[key]
        with open(stats_path + ".partial", "w") as f:  # what finished, if the run is stopped
          json.dump({"experiments": per, "total_in_process": dict(acc, cpu=_cpu_self())}, f)

    setattr(module, attr, timed)

  for name in EXPERIMENTS:
    module = importlib.import_module(f"rpd.experiments.{name}")
    wrap(name, module, "run")
    wrap(name, module, "plot")
  from rpd.cli import main
  t0 = time.time()
  rc = main(argv)
  out = {"rc": rc, "experiments": per, "total_in_process": dict(acc, wall=time.time() - t0,
                                                                cpu=_cpu_self())}
  with open(stats_path, "w") as f:
    json.dump(out, f)
  return rc


def _stated() -> dict:
  """Times stated in README.md and paper_figures/README.md (seconds; None where absent)."""
  out = {"readme_wall": None, "readme_cpu": None, "figures_wall": None, "figures_cpu": None,
         "figures_per_experiment": {}}
  try:
    text = open(os.path.join(ROOT, "README.md")).read()
    m = re.search(r"(\d+) min (\d+) s wall, (\d+) min (\d+) s CPU", text)
    if m:
      a, b, c, d = map(int, m.groups())
      out["readme_wall"], out["readme_cpu"] = 60 * a + b, 60 * c + d
    else:  # "340 s wall, 439 s CPU"
      m = re.search(r"(\d+) s wall, (\d+) s CPU", text)
      if m:
        out["readme_wall"], out["readme_cpu"] = map(int, m.groups())
  except OSError:
    pass
  try:
    text = open(os.path.join(ROOT, "paper_figures", "README.md")).read()
    m = re.search(r"(\d+) s wall, (\d+) s CPU", text)
    if m:
      out["figures_wall"], out["figures_cpu"] = map(int, m.groups())
    for name, secs in re.findall(r"^## (\w+)$.*?\*\*Runtime:\*\* (\d+) s", text, re.M | re.S):
      out["figures_per_experiment"][name] = int(secs)
  except OSError:
    pass
  return out


def one_run(args, cache_dir: str | None, label: str) -> dict:
  """One ``rpd reproduce`` in a child process; returns its stats with the child's totals."""
  out_dir = tempfile.mkdtemp(prefix="rpd-bench-out-")
  stats = os.path.join(out_dir, "bench-stats.json")
  argv = ["reproduce", "--out", out_dir, "--no-progress"] + ([] if args.full else ["--quick"])
  if args.only:
    argv += ["--only", args.only]
  if args.jobs:
    argv += ["--jobs", str(args.jobs)]
  env = dict(os.environ)
  if cache_dir is None:
    argv.append("--no-cache")
  else:
    env["RPD_CACHE_DIR"] = cache_dir
  r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
  t0 = time.time()
  proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", stats, "--"]
                        + argv, env=env, cwd=ROOT)
  wall = time.time() - t0
  r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
  if proc.returncode != 0:
    raise SystemExit(f"bench_reproduce: {label}: rpd {' '.join(argv)} exited "
                     f"{proc.returncode}")
  with open(stats) as f:
    res = json.load(f)
  res.update(label=label, out=out_dir, wall=wall,
             cpu=(r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime))
  return res


def show(res: dict, stated: dict) -> None:
  print(f"\n{res['label']}: rpd reproduce into {res['out']}")
  head = (f"{'experiment':16s} {'wall s':>7s} {'cpu s':>7s} {'trace s':>8s} {'compile s':>9s} "
          f"{'programs':>8s} {'cached':>6s} {'stated wall s':>13s}")
  print(head)
  print("-" * len(head))
  for name, e in res["experiments"].items():
    st = stated["figures_per_experiment"].get(name)
    print(f"{name:16s} {e['wall']:7.1f} {e['cpu']:7.1f} {e['trace']:8.1f} {e['compile']:9.1f} "
          f"{e['programs']:8d} {e['cache_hits']:6d} {'' if st is None else st:>13}")
  t = res["total_in_process"]
  print(f"{'(in process)':16s} {t['wall']:7.1f} {t['cpu']:7.1f} {t['trace']:8.1f} "
        f"{t['compile']:9.1f} {t['programs']:8d} {t['cache_hits']:6d}")
  print(f"total (process, imports included): {res['wall']:.0f} s wall, {res['cpu']:.0f} s CPU; "
        f"stated in README.md: {stated['readme_wall']} s wall, {stated['readme_cpu']} s CPU; "
        f"in paper_figures/README.md: {stated['figures_wall']} s wall, "
        f"{stated['figures_cpu']} s CPU")


def main() -> int:
  if len(sys.argv) > 2 and sys.argv[1] == "--child":
    return child(sys.argv[4:], sys.argv[2])
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--full", action="store_true", help="full resolution (no --quick)")
  p.add_argument("--only", default=None, help="passed to rpd reproduce --only")
  p.add_argument("--jobs", type=int, default=None,
                 help="passed to rpd reproduce --jobs (1: per-experiment columns exact)")
  p.add_argument("--warm", action="store_true",
                 help="then a second run into a new folder with the cache the first filled")
  p.add_argument("--no-cache", action="store_true", help="run with --no-cache")
  p.add_argument("--json", default=None, help="also write the stats to this JSON file")
  args = p.parse_args()
  from rpd.experiments.common import cpu_name  # the stated times hold for their machine only
  print(f"{os.cpu_count()} CPU cores ({cpu_name()}); load average {os.getloadavg()[0]:.2f} at "
        "the start "
        "(wall times grow with the load; CPU time and program counts much less)")
  stated = _stated()
  cache = None if args.no_cache else tempfile.mkdtemp(prefix="rpd-bench-cache-")
  runs = [one_run(args, cache, "empty cache" if cache else "no cache")]
  show(runs[0], stated)
  if args.warm and cache:
    runs.append(one_run(args, cache, "warm cache (second run, new folder)"))
    show(runs[1], stated)
  print(f"load average {os.getloadavg()[0]:.2f} at the end")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"cpu": cpu_name(), "cores": os.cpu_count(), "stated": stated, "runs": runs},
                f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
