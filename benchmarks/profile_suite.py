"""Where the test suite's time goes: wall, CPU and JAX compilation per test module.

    python benchmarks/profile_suite.py [--cache-dir DIR] [--top N] [-- PYTEST ARGS...]

Runs ``python -m pytest`` (the project's options: two xdist workers) in a child process with
``RPD_COMPILE_PROFILE`` set: every pytest process of the run that loads ``tests/conftest.py``
(the workers and the mutants' runs; the theory and schedule mutants' runs skip it and compile
nothing) records JAX's compile events (tracing, lowering to MLIR,
XLA backend compilation) per test module and per compiled function. Prints the wall time,
the CPU time of the whole process tree, the compile totals, the modules and functions that
compile most, and the compile CPU next to what the 4-minute goal allows on this machine
(240 s x cores). The commands the tests start (``rpd reproduce``, ``rpd train``, ...) are
counted in the CPU time but not in the compile columns.

By default the compilation cache is a new empty folder (``RPD_CACHE_DIR``), as on a fresh
clone; ``--cache-dir`` reuses one (a second run with the same folder measures a warm cache).
A benchmark, not a test: wall times depend on the machine's load, CPU and counts much less.
"""
from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _children_cpu() -> float:
  r = resource.getrusage(resource.RUSAGE_CHILDREN)
  return r.ru_utime + r.ru_stime


def main(argv: list[str] | None = None) -> int:
  argv = sys.argv[1:] if argv is None else argv
  pytest_args: list[str] = []
  if "--" in argv:
    argv, pytest_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
  ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  ap.add_argument("--cache-dir", help="compilation cache folder (default: a new empty one)")
  ap.add_argument("--top", type=int, default=15, help="rows per table (default 15)")
  args = ap.parse_args(argv)
  prof = tempfile.mkdtemp(prefix="rpd-suite-profile-")
  cache = args.cache_dir or tempfile.mkdtemp(prefix="rpd-suite-cache-")
  env = dict(os.environ, RPD_COMPILE_PROFILE=prof, RPD_CACHE_DIR=cache)
  env.pop("RPD_NO_CACHE", None)
  t0, c0 = time.time(), _children_cpu()
  rc = subprocess.call([sys.executable, "-m", "pytest", *pytest_args], cwd=ROOT, env=env)
  wall, cpu = time.time() - t0, _children_cpu() - c0

  n_proc, by_mod, by_fun = 0, collections.defaultdict(lambda: [0, 0.0, 0.0]), {}
  totals = collections.Counter()
  for path in glob.glob(os.path.join(prof, "*.json")):
    n_proc += 1
    with open(path) as f:
      events = json.load(f)["events"]
    for key, (n, secs) in events.items():
      parts = key.split("|")
      if parts[0] == "fun":
        if parts[1] == "backend_compile":
          e = by_fun.setdefault(parts[2], [0, 0.0])
          e[0] += n
          e[1] += secs
        continue
      module, kind = parts
      totals[kind] += secs
      if kind == "backend_compile":
        totals["programs"] += n
        by_mod[module][0] += n
        by_mod[module][1] += secs
      else:
        by_mod[module][2] += secs
  cores = os.cpu_count() or 1
  compile_s = totals["backend_compile"]
  trace_s = totals["jaxpr_trace"] + totals["jaxpr_to_mlir_module"]
  print(f"\npytest exit code {rc}; {n_proc} pytest processes profiled; cache {cache}")
  from rpd.experiments.common import cpu_name
  print(f"wall {wall:.1f} s, CPU {cpu:.1f} s (whole process tree, {cores} cores: {cpu_name()})")
  print(f"XLA backend compile {compile_s:.1f} s in {int(totals['programs'])} compiles "
        f"(persistent-cache loads included), tracing + lowering {trace_s:.1f} s")
  print(f"4-minute goal: {240 * cores} CPU s on {cores} cores; backend compile alone is "
        f"{compile_s / (240 * cores):.0%} of it, the whole run's CPU {cpu / (240 * cores):.0%}")
  print(f"\n{'compile s':>10} {'compiles':>9} {'trace+lower s':>14}  test module")
  for mod, (n, c, t) in sorted(by_mod.items(), key=lambda kv: -kv[1][1])[:args.top]:
    print(f"{c:10.1f} {n:9d} {t:14.1f}  {mod}")
  print(f"\n{'compile s':>10} {'compiles':>9}  compiled function")
  for fun, (n, c) in sorted(by_fun.items(), key=lambda kv: -kv[1][1])[:args.top]:
    print(f"{c:10.1f} {n:9d}  {fun}")
  return rc


if __name__ == "__main__":
  sys.exit(main())
