"""Per batch of ``rpd reproduce --quick``: compile, trace and run time under each code generation.

Command (recorded with its output in BENCHMARKS.md, sessions 12 and 13):

    python benchmarks/bench_codegen.py [--modes fast,balanced,optimized,chosen] [--only NAMES]

For each mode, a child process runs ``rpd reproduce --quick --jobs 1 --no-progress`` into a new
temporary folder with an empty compilation cache of its own, and times every batch that the
experiment runner runs (``run_engine_batch``, ``run_localsgd_batch``): wall, XLA backend compile
(``/jax/core/compile/backend_compile_duration``), tracing and lowering, and the rest ("run":
mostly executing the program). Modes:

- ``fast``: every batch with the quick run's process default (loop emitters, LLVM -O0);
- ``optimized``, ``balanced`` (any other name of :data:`rpd.codegen.CODEGEN`): every batch
  compiled with that code generation (XLA:CPU's default; the loop emitters at LLVM -O1);
- ``chosen``: as ``rpd reproduce --quick`` runs (:func:`rpd.codegen.for_work` of each batch's
  work estimate).

Then one row per batch: its work estimate, the choice, and each mode's compile and run time, and
the totals; with two or more code generations measured, the best of them per batch (what a
perfect choice would get) next to ``chosen``. One experiment at a time (``--jobs 1``), so the
split is clean; wall times depend on the machine's load.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EVENTS = {"/jax/core/compile/jaxpr_trace_duration": "trace",
          "/jax/core/compile/jaxpr_to_mlir_module_duration": "trace",
          "/jax/core/compile/backend_compile_duration": "compile"}


def child(mode: str, out_json: str, argv: list[str]) -> int:
  """Run ``rpd`` with ``argv`` in this process under ``mode``; write one record per batch."""
  import time

  import jax.monitoring as mon

  import rpd.codegen
  choose = rpd.codegen.for_work  # the choice rpd reproduce makes, whatever the mode runs
  if mode == "fast":
    rpd.codegen.for_work = lambda work, default: None
  elif mode in rpd.codegen.CODEGEN:
    rpd.codegen.for_work = lambda work, default: mode
  acc = {"trace": 0.0, "compile": 0.0}

  def on_duration(event, secs, **_):
    kind = EVENTS.get(event)
    if kind:
      acc[kind] += secs

  mon.register_event_duration_secs_listener(on_duration)
  import rpd.experiments.runner as runner
  from rpd.experiments.runner import build_problem, engine_work, localsgd_work
  from rpd.rules import get_rule
  rows = []

  def wrap(name):
    fn = getattr(runner, name)

    def timed(store, base, spec, *a, **kw):
      before, t0, c0 = dict(acc), time.time(), time.process_time()
      n = fn(store, base, spec, *a, **kw)
      wall, cpu = time.time() - t0, time.process_time() - c0
      if n:
        S = a[1]
        problem = build_problem(spec, S)
        if name == "run_engine_batch":
          what = a[0]
          work = engine_work(problem, get_rule(a[0], S), a[4], len(a[2]))
        else:
          what = f"localsgd H={a[0]}"
          work = localsgd_work(problem, a[0], a[4], len(a[2]))
        rows.append(dict(experiment=base.get("experiment"), problem=spec["name"], what=what,
                         S=S, n=n, work=work,
                         choice=choose(work, rpd.codegen.process_default()) or "default",
                         wall=wall, cpu=cpu, compile=acc["compile"] - before["compile"],
                         trace=acc["trace"] - before["trace"]))
        with open(out_json, "w") as f:
          json.dump(rows, f)
      return n

    setattr(runner, name, timed)
    import importlib
    for m in ("critical_gamma", "mitigations", "pd_vs_localsgd", "stage_sweep"):
      mod = importlib.import_module(f"rpd.experiments.{m}")
      if hasattr(mod, name):
        setattr(mod, name, timed)

  wrap("run_engine_batch")
  wrap("run_localsgd_batch")
  from rpd.cli import main
  return main(argv)


def main() -> int:
  if sys.argv[1:2] == ["--child"]:  # the child process: mode, output file, rpd's arguments
    return child(sys.argv[2], sys.argv[3], sys.argv[4:])
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--modes", default="fast,optimized,chosen")
  ap.add_argument("--only", default=None, help="passed to rpd reproduce --only")
  args = ap.parse_args()
  modes = [m.strip() for m in args.modes.split(",") if m.strip()]
  from rpd.codegen import CODEGEN
  known = (*CODEGEN, "chosen")
  bad = [m for m in modes if m not in known]
  if bad:
    print(f"bench_codegen: unknown mode {bad[0]!r}; known: {', '.join(known)}",
          file=sys.stderr)
    return 2
  runs = {}
  for mode in modes:
    tmp = tempfile.mkdtemp(prefix=f"rpd-codegen-{mode}-")
    out_json = os.path.join(tmp, "batches.json")
    argv = ["reproduce", "--quick", "--jobs", "1", "--no-progress", "--out",
            os.path.join(tmp, "out")] + (["--only", args.only] if args.only else [])
    env = dict(os.environ, RPD_CACHE_DIR=os.path.join(tmp, "cache"))
    env.pop("RPD_NO_CACHE", None)
    subprocess.run([sys.executable, os.path.abspath(__file__), "--child", mode, out_json,
                    *argv], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    with open(out_json) as f:
      runs[mode] = json.load(f)
    print(f"{mode}: {len(runs[mode])} batches, wall {sum(r['wall'] for r in runs[mode]):.1f} s",
          flush=True)
  first = runs[modes[0]]
  head = f"{'experiment':15s} {'problem':11s} {'rule':18s} {'S':>3s} {'work':>9s} {'choice':9s}"
  print(head + "".join(f" | {m[:5]:>5s} comp  run  cpu" for m in modes))
  for i, r in enumerate(first):
    line = (f"{r['experiment']:15s} {r['problem']:11s} {str(r['what']):18s} {r['S']:3d} "
            f"{r['work']:9.3g} {r['choice']:9s}")
    for m in modes:
      x = runs[m][i]
      line += (f" | {x['compile']:10.1f} {x['wall'] - x['compile'] - x['trace']:4.1f}"
               f" {x['cpu']:4.1f}")
    print(line)
  for m in modes:
    rs = runs[m]
    print(f"total {m:9s}: wall {sum(r['wall'] for r in rs):6.1f} s, "
          f"cpu {sum(r['cpu'] for r in rs):6.1f} s, compile "
          f"{sum(r['compile'] for r in rs):6.1f} s, trace {sum(r['trace'] for r in rs):5.1f} s, "
          f"run {sum(r['wall'] - r['compile'] - r['trace'] for r in rs):6.1f} s")
  fixed = [m for m in modes if m in CODEGEN]
  if len(fixed) > 1:  # what a perfect per-batch choice among the measured modes would cost
    rows = list(zip(*(runs[m] for m in fixed)))
    best_w = sum(min(x["wall"] for x in row) for row in rows)
    best_c = sum(min(x["cpu"] for x in row) for row in rows)
    print(f"best of {', '.join(fixed)} per batch: wall {best_w:.1f} s, cpu {best_c:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
