"""Pipeline benchmark: microbatches per second of every executed schedule against one device,
each device and the one-device baseline with the same thread budget.

Command (recorded with its output in BENCHMARKS.md):

    python benchmarks/bench_pipeline.py [--stages 2] [--schedules all] [--json FILE]

Fairness. XLA's CPU backend runs each device's computation with Eigen's intra-op thread
pool, and the one-device baseline would use every core for its matmuls while a forced host
device shares the same cores. Here every computation is single-threaded
(``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1``, set before
JAX starts): each of the ``P`` pipeline devices and the baseline get one thread, so ``P``
devices may use ``P`` cores and the ideal speed-up is ``P (1 - bubble)``.

Model: the digits MLP widened (``--hidden``, ``--layers``; float32, SGD), ``P V`` blocks.
Baseline: one device, a jitted ``lax.scan`` over microbatches, each the whole model's
forward and backward (``jax.value_and_grad``), one SGD update per ``M`` microbatches.
Executor: :func:`rpd.pipeline.execute` with the schedule's plan, ``--stash inputs`` by default
(the backward recomputes the block's forward: measured cheaper on CPU than copying the vjp
residuals, which include the block's weights; ``--stash residuals`` to compare). Each run is timed whole (fill and drain included)
after a first, compiling run. ``bubble`` is the idle fraction of the plan's tick table (the
executor's clock: one tick per action, ``F``, ``B`` and ``W`` alike, fill and drain included),
and ``ratio = (rate / baseline) / (P (1 - bubble))``.

Load. On a shared machine the wall-clock ratio measures the share of the cores the process
got. The benchmark therefore also prints the CPU time per microbatch (all threads) and the
*work efficiency* ``baseline CPU / pipeline CPU`` (1 = the pipeline adds no work; the
speed-up an idle machine with ``P`` free cores would show is at most
``P (1 - bubble) x work efficiency``), and the load average at the start and the end.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

if "jax" not in sys.modules:
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=8"
                             " --xla_cpu_multi_thread_eigen=false"
                             " intra_op_parallelism_threads=1").strip()
  os.environ.setdefault("JAX_PLATFORMS", "cpu")

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rpd.engine import sample_key  # noqa: E402
from rpd.pipeline import SUPPORTED, build_plan, execute, stage_mesh  # noqa: E402
from rpd.pipeline.plan import C, IDLE  # noqa: E402
from rpd.problems.mlp import make_mlp  # noqa: E402
from rpd.schedules import get_schedule  # noqa: E402

GAMMA = 0.01


def tick_bubble(plan) -> float:
  """Idle fraction of the plan's (device, tick) cells."""
  kind = plan.table[:, :, C["kind"]]
  return float((kind == IDLE).mean())


def timed(fn):
  """``(wall, cpu)`` seconds of ``fn()`` (process CPU time: every thread of this process)."""
  t, c = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - t, time.process_time() - c


def baseline(problem, M: int, batches: int, key):
  """Wall and CPU seconds of ``M batches`` microbatches of the whole model on one device (one
  update per M), compiled beforehand."""
  grad = jax.value_and_grad(problem.loss)

  @jax.jit
  def run(x):
    def batch(x, n):
      full = problem.sample(sample_key(key, n))
      b = problem.batch_size(full) // M

      def micro(g, j):
        mb = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, j * b, b, 0), full)
        return g + grad(x, mb)[1], None
      g, _ = jax.lax.scan(micro, jnp.zeros_like(x), jnp.arange(M))
      return x - GAMMA * g / M, None
    x, _ = jax.lax.scan(batch, x, jnp.arange(batches))
    return x

  x = jax.device_put(problem.init(key), jax.devices()[0])
  jax.block_until_ready(run(x))  # compile
  return timed(lambda: jax.block_until_ready(run(x)))


def pipeline(problem, name: str, P: int, M: int, batches: int, key, stash: str):
  """Wall and CPU seconds of the whole run (fill and drain included, as in the tick bubble),
  compiled beforehand."""
  sched = get_schedule(name)
  V = 2 if sched.chunked else 1
  plan = build_plan(name, P, M, V=V, batches=batches)
  mesh = stage_mesh(P)
  run = lambda: execute(problem, plan, gamma=GAMMA, key=key, mesh=mesh, stash=stash)  # noqa
  run()  # compile
  wall, cpu = timed(run)
  return wall, cpu, tick_bubble(plan), plan


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--stages", type=int, default=2, help="P devices")
  ap.add_argument("--schedules", default="all", help="comma-separated, or all")
  ap.add_argument("--microbatches", type=int, default=8, help="M per batch")
  ap.add_argument("--batches", type=int, default=4, help="timed batches (after one warm-up)")
  ap.add_argument("--hidden", type=int, default=512)
  ap.add_argument("--layers", type=int, default=8, help="layers in all (divisible by P V)")
  ap.add_argument("--batch", type=int, default=128, help="samples per microbatch")
  ap.add_argument("--stash", default="inputs", help="inputs | residuals")
  ap.add_argument("--json", default=None)
  args = ap.parse_args(argv)
  P, M = args.stages, args.microbatches
  names = SUPPORTED if args.schedules == "all" else tuple(args.schedules.split(","))
  key = jax.random.key(0)
  load = os.getloadavg()
  out = {"P": P, "M": M, "batches": args.batches, "hidden": args.hidden, "layers": args.layers,
         "batch": args.batch, "stash": args.stash, "xla_flags": os.environ.get("XLA_FLAGS"),
         "cpus": os.cpu_count(), "loadavg_start": load, "machine": platform.machine(),
         "jax": jax.__version__, "rows": []}
  problems = {}

  def problem(S):
    if S not in problems:
      problems[S] = make_mlp(S, hidden=args.hidden, n_layers=args.layers,
                             batch=args.batch * M, dtype=jnp.float32)
    return problems[S]

  n = M * args.batches
  b_wall, b_cpu = baseline(problem(1), M, args.batches, key)
  base = n / b_wall
  out["baseline_microbatches_per_s"] = base
  out["baseline_cpu_s_per_microbatch"] = b_cpu / n
  print(f"P={P}, M={M}, {args.batches} batches, MLP {args.layers}x{args.hidden}, microbatch "
        f"{args.batch}, stash {args.stash}; one thread per device; load average {load[0]:.1f}")
  print(f"baseline (1 device, 1 thread): {base:.2f} microbatches/s, "
        f"{1e3 * b_cpu / n:.1f} ms CPU per microbatch")
  print(f"{'schedule':18s} {'mb/s':>8s} {'speed-up':>8s} {'P(1-bub)':>8s} {'ratio':>6s} "
        f"{'CPU/mb':>8s} {'work eff':>8s}")
  for name in names:
    V = 2 if get_schedule(name).chunked else 1
    if args.layers % (P * V):
      print(f"{name:18s} skipped: {args.layers} layers do not split into {P * V} blocks")
      continue
    try:
      wall, cpu, bub, plan = pipeline(problem(P * V), name, P, M, args.batches, key, args.stash)
    except ValueError as e:
      print(f"{name:18s} refused: {e}")
      continue
    rate = n / wall
    ideal = P * (1 - bub)
    row = {"schedule": name, "microbatches_per_s": rate, "speedup": rate / base,
           "ideal": ideal, "ratio": rate / base / ideal, "tick_bubble": bub, "V": V,
           "cpu_s_per_microbatch": cpu / n, "work_efficiency": b_cpu / cpu}
    out["rows"].append(row)
    print(f"{name:18s} {rate:8.2f} {rate / base:8.2f} {ideal:8.2f} {row['ratio']:6.2f} "
          f"{1e3 * cpu / n:6.1f}ms {row['work_efficiency']:8.2f}", flush=True)
  out["loadavg_end"] = os.getloadavg()
  print(f"load average at the end {out['loadavg_end'][0]:.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
