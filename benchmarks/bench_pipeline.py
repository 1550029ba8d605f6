"""Pipeline benchmark: microbatches per second of the executor against one device.

Command (recorded with its output in BENCHMARKS.md):

    python benchmarks/bench_pipeline.py [--stages 2 4] [--json FILE]

For each ``S`` it trains the same decoder-only transformer (``rpd.problems.transformer``,
``S * blocks_per_stage`` blocks; float32, SGD) three ways and reports microbatches per second:

(a) one device: a jitted ``lax.scan`` over microbatches, each a full forward and backward of
    the whole model and an SGD step (the model as ``S = 1``: every block on one device);
(b) the executor (``rpd.pipeline.execute``) with ``pipedream`` on ``S`` devices, one stage each;
(c) the executor with ``1f1b-flush`` (``M = 2 S`` microbatches per flush).

Rates are *marginal*, ``(n2 - n1) / (t(n2) - t(n1))`` between two run lengths, each the best of
``--repeats`` runs after a compile-and-warm-up run: the steady-state rate, without compilation
and (for PipeDream) without the fill and drain. The prediction is the simulator's
``S (1 - bubble)`` (``steady_bubble_ratio`` of :func:`rpd.schedules.metrics.schedule_metrics`
with ``F = B = 1``, the executor's tick clock) over one device.

On a CPU host the ``S`` devices are forced host devices (``XLA_FLAGS``, set below before JAX
starts) that share the machine's cores: with 2 cores only ``S = 2`` can run two stages at the
same time; larger ``S`` measure the executor's overhead, not a speed-up.
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
                             " --xla_force_host_platform_device_count=8").strip()

import numpy as np  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from rpd.engine import sample_key  # noqa: E402
from rpd.pipeline import build_plan, execute, stage_mesh  # noqa: E402
from rpd.problems.transformer import make_transformer  # noqa: E402
from rpd.schedules import get_schedule  # noqa: E402
from rpd.schedules.metrics import schedule_metrics  # noqa: E402

GAMMA = 0.01


def best_of(fn, repeats):
  fn()  # compile and warm up
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times)


def one_device(prob, x0, n):
  """(a): ``n`` SGD steps on the whole model, one microbatch each, on one device."""
  @jax.jit
  def go(x, key):
    def step(x, i):
      return x - GAMMA * jax.grad(prob.loss)(x, prob.sample(sample_key(key, i))), None
    return jax.lax.scan(step, x, jnp.arange(n, dtype=jnp.int32))[0]
  key = jax.random.key(0)
  return lambda: jax.block_until_ready(go(x0, key))


def pipelined(prob, x0, schedule, S, n, chunk):
  M = n if schedule == "pipedream" else 2 * S
  plan = build_plan(schedule, S, M, batches=1 if schedule == "pipedream" else n // M)
  mesh = stage_mesh(S)
  key = jax.random.key(0)
  return lambda: execute(prob, plan, gamma=GAMMA, key=key, x0=x0, mesh=mesh, chunk=chunk)


def marginal(make, n1, n2, repeats):
  t1, t2 = best_of(make(n1), repeats), best_of(make(n2), repeats)
  return (n2 - n1) / (t2 - t1), t1, t2


def main(argv=None):
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--stages", type=int, nargs="+", default=[2, 4])
  ap.add_argument("--blocks-per-stage", type=int, default=1)
  ap.add_argument("--n", type=int, nargs=2, default=[32, 96], help="run lengths n1 n2")
  ap.add_argument("--repeats", type=int, default=3)
  ap.add_argument("--json", default=None)
  args = ap.parse_args(argv)
  n1, n2 = args.n
  out = {"machine": platform.machine(), "cpus": os.cpu_count(), "jax": jax.__version__,
         "devices": str(jax.devices()[0]), "rows": []}
  for S in args.stages:
    bps = args.blocks_per_stage
    one = make_transformer(1, blocks_per_stage=S * bps, batch=16)
    pipe = make_transformer(S, blocks_per_stage=bps, batch=16)
    flush = make_transformer(S, blocks_per_stage=bps, batch=16 * 2 * S)
    x1 = jax.jit(one.init)(jax.random.key(0))
    xs = jax.jit(pipe.init)(jax.random.key(0))
    r_one, _, _ = marginal(lambda n: one_device(one, x1, n), n1, n2, args.repeats)
    # chunk: one compiled call of this many ticks, reused by both run lengths.
    chunk = 2 * n1 + 2 * S
    r_pd, _, _ = marginal(lambda n: pipelined(pipe, xs, "pipedream", S, n, chunk), n1, n2,
                          args.repeats)
    r_fl, _, _ = marginal(lambda n: pipelined(flush, xs, "1f1b-flush", S, n, chunk), n1, n2,
                          args.repeats)
    pd = schedule_metrics(get_schedule("pipedream"), S, n2, durations={"F": 1, "B": 1})
    fl = schedule_metrics(get_schedule("1f1b-flush"), S, 2 * S, durations={"F": 1, "B": 1})
    row = {"S": S, "d": pipe.d, "one_device_mb_per_s": r_one,
           "pipedream_mb_per_s": r_pd, "pipedream_speedup": r_pd / r_one,
           "pipedream_predicted": S * (1 - pd["steady_bubble_ratio"]),
           "flush_mb_per_s": r_fl, "flush_speedup": r_fl / r_one,
           "flush_predicted": S * (1 - fl["bubble_ratio"])}
    out["rows"].append(row)
    print(f"S={S} d={pipe.d}: one device {r_one:7.1f} mb/s | pipedream {r_pd:7.1f} mb/s, "
          f"x{row['pipedream_speedup']:.2f} (predicted x{row['pipedream_predicted']:.2f}) | "
          f"1f1b-flush M={2 * S} {r_fl:7.1f} mb/s, x{row['flush_speedup']:.2f} "
          f"(predicted x{row['flush_predicted']:.2f})", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
