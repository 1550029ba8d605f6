"""``rpd pipeline``: train a layered model with a real pipeline, each device its own blocks.

Runs :func:`rpd.pipeline.execute` (one ``shard_map`` program over the ``"stage"`` mesh axis,
``ppermute`` between devices) for any schedule of :mod:`rpd.schedules` (``P`` devices,
``P V`` blocks for the chunked schedules), and writes
``metrics.csv`` (one row per record: ticks, microbatches done, mean training loss of the
microbatches since the previous record, evaluation loss ``full_loss``, wall seconds) and
``run.json`` (arguments, summary, the simulator's prediction for the schedule, metadata) into
``--out`` atomically, as ``rpd train`` does. Exit codes as ``rpd train``: 2 bad input (one
line), 3 the run diverged (:func:`rpd.guards.blowup_index` on the evaluation losses, or
non-finite parameters).
"""
from __future__ import annotations

import os
import re
import sys

from rpd.cli import EXIT_DIVERGED, finite_float, positive_int, seed_int
from rpd import jsonout
from rpd.errors import InputError

NAME = "pipeline"
HELP = ("train a layered model (transformer, mlp, charlm) with a real pipeline: each device "
        "runs its own blocks, any schedule of `rpd schedules`")


def add_arguments(p) -> None:
  """Options of ``rpd pipeline``."""
  p.add_argument("--problem", default="transformer",
                 help="a layered problem: transformer | transformer:TEXT_FILE | mlp | charlm | "
                      "charlm:TEXT_FILE (default transformer on the bundled corpus)")
  p.add_argument("--text", default=None,
                 help="UTF-8 text file to train the transformer or charlm on (same as "
                      "--problem NAME:PATH; default: the bundled corpus)")
  p.add_argument("--schedule", default="pipedream",
                 help="any schedule of `rpd schedules` (default pipedream)")
  p.add_argument("--stages", type=positive_int("--stages"), default=4,
                 help="P pipeline devices (the model has P V blocks)")
  p.add_argument("--devices", type=positive_int("--devices"), default=None,
                 help="devices (must equal --stages; default --stages). On a CPU-only host "
                      "this many host devices are forced")
  p.add_argument("--chunks", type=positive_int("--chunks"), default=None,
                 help="V chunks per device for the chunked schedules (default 2)")
  p.add_argument("--microbatches", type=positive_int("--microbatches"), default=256,
                 help="microbatches in all (default 256)")
  p.add_argument("--flush-every", type=positive_int("--flush-every"), default=None,
                 help="microbatches per batch M (one update per flush for the synchronous "
                      "schedules, per 2BW step; divides --microbatches; default 2 P)")
  p.add_argument("--stash", default="inputs",
                 help="inputs (the backward recomputes the block's forward) | residuals (the "
                      "forward's vjp residuals are kept); default inputs")
  p.add_argument("--batch", type=positive_int("--batch"), default=None,
                 help="samples per microbatch (default: the problem's)")
  p.add_argument("--lr", type=finite_float("--lr"), default=0.01, help="step size gamma")
  p.add_argument("--optimizer", default="sgd", help="sgd | momentum | adam (per stage)")
  p.add_argument("--seed", type=seed_int("--seed"), default=0, help="PRNG seed of the run (default 0)")
  p.add_argument("--records", type=positive_int("--records"), default=16,
                 help="metric records (and progress lines) over the run (default 16)")
  p.add_argument("--out", default=None,
                 help="output directory (default runs/pipeline_<problem>_<schedule>_S<S>_...)")
  p.add_argument("--json", action="store_true", help=jsonout.JSON_HELP)
  p.add_argument("--quiet", action="store_true", help="no progress lines")


def _default_out(args) -> str:
  tag = (f"pipeline_{args.problem}_{args.schedule}_S{args.stages}_N{args.microbatches}"
         f"_lr{args.lr:g}_seed{args.seed}")
  return os.path.join("runs", re.sub(r"[^A-Za-z0-9_.=-]+", "-", tag))


def _check(args):
  """Argument checks that need no JAX (``InputError`` on bad input); returns ``(M, V)``."""
  from rpd.guards import MAX_PIPELINE_MICROBATCHES, check_count
  check_count(args.microbatches, "--microbatches", MAX_PIPELINE_MICROBATCHES,
              "the executor plans every microbatch's ticks")
  from rpd.pipeline.plan import REFUSED, default_V
  from rpd.schedules import SCHEDULES
  if args.devices is not None and args.devices != args.stages:
    raise InputError(f"--devices {args.devices} must equal --stages {args.stages} "
                     "(one pipeline position per device)")
  if args.schedule not in SCHEDULES:
    raise InputError(f"--schedule {args.schedule} is unknown; known: "
                     f"{', '.join(sorted(SCHEDULES))}")
  if args.schedule in REFUSED:
    raise InputError(f"--schedule {args.schedule} is not executed: {REFUSED[args.schedule]}")
  sched = SCHEDULES[args.schedule]
  V = args.chunks or default_V(args.schedule)
  if V != 1 and not sched.chunked:
    raise InputError(f"--chunks {V}: {args.schedule} holds one chunk per device")
  M = args.flush_every or 2 * args.stages
  if args.microbatches % M:
    raise InputError(f"--microbatches {args.microbatches} must be a multiple of "
                     f"--flush-every {M}")
  if args.optimizer not in ("sgd", "momentum", "adam"):
    raise InputError(f"unknown --optimizer {args.optimizer!r}; known: sgd, momentum, adam")
  if args.stash not in ("inputs", "residuals"):
    raise InputError(f"unknown --stash {args.stash!r}; known: inputs, residuals")
  if args.stash == "residuals" and sched.semantics.split_reads:
    raise InputError(f"--stash residuals is undefined for {args.schedule}: its backward reads "
                     "the current weights, which residuals saved by the forward do not")
  return M, V


def _problem(args, G: int, V: int):
  from rpd.problems import get_problem
  from rpd.problems.layered import is_layered
  name = args.problem.partition(":")[0]
  if args.text is not None:
    if name not in ("transformer", "charlm") or ":" in args.problem:
      raise InputError(f"--text {args.text}: needs --problem transformer or charlm "
                       f"(without :PATH), got {args.problem}")
    args.problem = f"{name}:{args.text}"
  opts = {}
  if args.batch is not None and name in ("transformer", "mlp", "charlm"):
    opts["batch"] = args.batch * G
  elif name in ("transformer", "mlp", "charlm") and G > 1:
    import inspect
    from rpd.problems.charlm import make_charlm
    from rpd.problems.mlp import make_mlp
    from rpd.problems.transformer import make_transformer
    make = {"transformer": make_transformer, "mlp": make_mlp, "charlm": make_charlm}[name]
    opts["batch"] = inspect.signature(make).parameters["batch"].default * G
  try:
    problem = get_problem(args.problem, args.stages * V, **opts)
  except ValueError as e:
    raise InputError(f"--problem {args.problem}: {e}") from None
  if not is_layered(problem):
    raise InputError(f"--problem {args.problem} is not layered (no per-stage functions); "
                     "layered: transformer, mlp, charlm")
  return problem


def run(args) -> int:
  """Train, write ``metrics.csv`` and ``run.json`` into ``--out``, print a summary."""
  if "jax" not in sys.modules:
    # On a CPU-only machine, expose S host devices (harmless on GPU/TPU hosts); this must
    # happen before JAX is first imported.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.stages}").strip()
  M, V = _check(args)
  out_dir = args.out or _default_out(args)
  from rpd import guards
  guards.check_writable_dir(out_dir, "--out")  # before any work
  guards.check_simulated_stages(args.stages, "--stages")

  import time

  import numpy as np
  import jax

  from rpd.cli.train import write_run
  from rpd.experiments.common import metadata
  from rpd.pipeline import build_plan, execute, stage_mesh
  from rpd.schedules import get_schedule
  from rpd.schedules.metrics import peak_activations, schedule_metrics

  if jax.device_count() < args.stages:
    raise InputError(f"--devices {args.stages}: only {jax.device_count()} devices available")
  problem = _problem(args, M, V)
  try:
    plan = build_plan(args.schedule, args.stages, M, V=V, batches=args.microbatches // M)
  except ValueError as e:
    raise InputError(f"--schedule {args.schedule}: {e}") from None
  full_loss = jax.jit(problem.full_loss)
  key = jax.random.key(args.seed)
  x0 = problem.init(key)
  f0 = float(full_loss(x0))
  H = getattr(problem, "unigram_entropy", None)
  chunk = -(-plan.T // args.records)
  rows = {"tick": [0], "microbatches": [0], "train_loss": [np.nan], "loss": [f0],
          "wall": [0.0]}
  t_start = time.perf_counter()

  def record(ticks, losses, w_SxD):
    done = len(losses)
    new = losses[rows["microbatches"][-1]:]
    rows["tick"].append(ticks)
    rows["microbatches"].append(done)
    rows["train_loss"].append(float(np.mean(new)) if len(new) else np.nan)
    from rpd.pipeline.executor import to_host
    rows["loss"].append(float(full_loss(to_host(w_SxD))))
    rows["wall"].append(time.perf_counter() - t_start)
    if not args.quiet and not args.json:
      print(f"[{ticks}/{plan.T} ticks] microbatch {done}/{plan.microbatches}: train loss "
            f"{rows['train_loss'][-1]:.4f}, eval loss {rows['loss'][-1]:.4f}"
            + (f" (unigram entropy {H:.4f})" if H else "")
            + f", {rows['wall'][-1]:.1f} s", flush=True)

  try:
    res = execute(problem, plan, gamma=args.lr, key=key, optimizer=args.optimizer, x0=x0,
                  mesh=stage_mesh(args.stages), stash=args.stash, chunk=chunk,
                  callback=record)
  except ValueError as e:
    raise InputError(str(e)) from None
  wall = time.perf_counter() - t_start
  sched = get_schedule(args.schedule)
  sim = schedule_metrics(sched, args.stages, M, V)
  steady = sim["steady_bubble_ratio"]
  final = rows["loss"][-1]
  n_stream = M if sched.semantics.synchronous else plan.microbatches
  sim_peak = peak_activations(sched.timed(args.stages, n_stream, V))  # the executor's clock
  blowup = guards.blowup_index(rows["loss"], problem.f_star)
  diverged = blowup is not None or not bool(np.all(np.isfinite(res.x_SxD)))
  summary = {
      "problem": args.problem, "schedule": args.schedule, "stages": args.stages,
      "devices": args.stages, "chunks": V, "blocks": plan.S,
      "microbatches": plan.microbatches, "flush_every": M,
      "lr": args.lr, "optimizer": args.optimizer, "seed": args.seed, "d": problem.d,
      "initial_loss": f0, "final_loss": final,
      "final_train_loss": float(np.mean(res.losses[-max(1, len(res.losses) // 10):])),
      "unigram_entropy": H, "diverged": diverged,
      "diverged_at_record": blowup,
      "ticks": plan.T, "peak_stash_per_stage": list(res.peak_stash),
      "sim_peak_act_per_stage": sim_peak,
      "stash": args.stash, "stash_floats_per_slot": res.stash_floats,
      "peak_stash_floats_per_stage": [n * res.stash_floats for n in res.peak_stash],
      "sim_bubble_ratio": sim["bubble_ratio"], "sim_steady_bubble_ratio": steady,
      "sim_speedup": args.stages * (1 - steady),
      "microbatches_per_s": plan.microbatches / max(res.wall + res.compile_wall, 1e-9),
      "wall_seconds": round(wall, 3), "compile_and_first_chunk_seconds": round(res.compile_wall, 3),
      "metrics_file": os.path.join(out_dir, "metrics.csv"),
      "metadata": metadata(args.seed, wall),
  }
  write_run(out_dir, rows, args, summary)
  if args.json:
    print(jsonout.dumps(summary))
  else:
    print(f"{args.problem} {args.schedule} on P={args.stages} devices (S={plan.S} blocks), "
          f"{plan.microbatches} microbatches: eval loss {f0:.4f} -> {final:.4f}"
          + (f" (unigram entropy {H:.4f})" if H else "")
          + f"; peak stash {list(res.peak_stash)} x {res.stash_floats} floats ({args.stash}; "
          f"simulator peak act {sim_peak}); {wall:.1f} s; metrics in "
          f"{summary['metrics_file']}"
          + (f"; DIVERGED at record {blowup} (exit code 3)" if diverged else ""))
  return EXIT_DIVERGED if diverged else 0
