"""``rpd train``: one run of stale block SGD (a problem, a rule, an optimizer) with metrics.

Writes ``metrics.csv`` (one row per record point) and ``run.json`` (arguments, summary and
metadata: commit, versions, devices, seed) into ``--out``, atomically: a run that fails or is
interrupted leaves nothing half-written there.

Exit codes: 0 finished, 2 bad input (one line on stderr, nothing written), 3 the run diverged
(a non-finite loss, or a loss that moved away from ``f*`` (or 0 when unknown) by more than
``rpd.guards.GROWTH_FACTOR`` = 1e6 times its initial distance; see
:func:`rpd.guards.blowup_index`): its metrics are still written; 130 interrupted (Ctrl-C):
the finished records are written.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from rpd.cli import EXIT_DIVERGED, finite_float, positive_int, seed_int
from rpd import jsonout
from rpd.errors import InputError

NAME = "train"
HELP = ("train with stale block SGD under a delay rule (rpd train --help lists them); exit "
        "code 3 if the run diverged (non-finite loss or loss growth by 1e6x)")




def add_arguments(p: argparse.ArgumentParser) -> None:
  """Options of ``rpd train``."""
  p.add_argument("--problem", default="quadratic",
                 help="quadratic | logistic | quadratic:FILE.npz (arrays A, b) | "
                      "logistic:FILE.npz (arrays X, y) | logistic:breast_cancer | charlm | "
                      "charlm:TEXT_FILE (default quadratic)")
  p.add_argument("--stages", type=positive_int("--stages"), default=4, help="S blocks (default 4)")
  p.add_argument("--rule", default="rpd",
                 help="a stale-update rule spec, NAME[:ARGS], or a mitigation on a base rule, "
                      "NAME[:ARGS]:BASE (every registered one is listed below; default rpd)")
  _list_rules_in_help(p)
  p.add_argument("--lr", type=finite_float("--lr"), default=0.01, help="step size gamma (default %(default)s)")
  p.add_argument("--steps", type=positive_int("--steps"), default=4096,
                 help="K iterations = block updates (pipedream: a multiple of S; default %(default)s)")
  p.add_argument("--seed", type=seed_int("--seed"), default=0, help="PRNG seed of the run (default 0)")
  p.add_argument("--noise", type=finite_float("--noise", strict=False), default=0.0,
                 help="quadratic: gradient noise sigma (0: exact gradients)")
  p.add_argument("--dim", type=positive_int("--dim"), default=64,
                 help="synthetic problems: dimension d (default 64)")
  p.add_argument("--samples", type=positive_int("--samples"), default=1024,
                 help="synthetic logistic: number of rows n (default 1024)")
  p.add_argument("--problem-seed", type=seed_int("--problem-seed"), default=0,
                 help="seed of the synthetic data (default 0)")
  p.add_argument("--optimizer", default="sgd", help="sgd | momentum | adam (per block; default %(default)s)")
  p.add_argument("--batch", type=positive_int("--batch"), default=64,
                 help="logistic: minibatch size (default 64)")
  p.add_argument("--record-every", type=positive_int("--record-every"), default=None,
                 help="iterations between metric records (divides --steps)")
  p.add_argument("--x0", default=None, help=".npy file with the initial point (length d)")
  p.add_argument("--devices", type=positive_int("--devices"), default=None,
                 help="shard the blocks over this many devices (must divide S)")
  p.add_argument("--track-average", action="store_true",
                 help="also record exact running averages over all iterations (slower)")
  p.add_argument("--out", default=None,
                 help="output directory (default runs/<problem>_<rule>_S<S>_lr<lr>_K<steps>_<optimizer>_"
                      "noise<noise>_seed<seed>_<hash of every other option>)")
  p.add_argument("--json", action="store_true", help=jsonout.JSON_HELP)


def _list_rules_in_help(p: argparse.ArgumentParser) -> None:
  """Append the rule registry's list to ``--help`` (imported only when help is shown, so
  building the parser stays cheap)."""
  plain = p.format_help

  def format_help():
    from rpd.rules.registry import rules_help
    import rpd.rules  # noqa: F401  (fills the registry)
    p.epilog = rules_help()
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    return plain()

  p.format_help = format_help


def _default_out(args) -> str:
  """``runs/NAME``, unique per configuration (:func:`rpd.guards.run_dir_name`)."""
  from rpd.guards import run_dir_name
  fields = {k: v for k, v in vars(args).items()
            if not k.startswith("_") and k not in ("out", "json", "command")}
  fields.update(S=args.stages, K=args.steps)
  return os.path.join("runs", run_dir_name(
      fields, (("", "problem"), ("", "rule"), ("S", "S"), ("lr", "lr"), ("K", "K"),
               ("", "optimizer"), ("noise", "noise"), ("seed", "seed"))))


def _build(args):
  """Problem, rule, x0 and mesh from the arguments (``InputError`` on bad input)."""
  import jax
  import jax.numpy as jnp

  from rpd.engine import OPTIMIZERS
  from rpd.problems import get_problem, problem_options
  from rpd.problems.base import split_blocks
  from rpd.rules import get_rule

  try:
    opts = problem_options(args.problem, d=args.dim, n=args.samples, seed=args.problem_seed,
                           noise=args.noise, batch=args.batch)
  except ValueError as e:
    raise InputError(str(e)) from None
  if args.optimizer not in OPTIMIZERS:
    raise InputError(f"unknown optimizer {args.optimizer!r}; known: {', '.join(OPTIMIZERS)}")
  try:
    problem = get_problem(args.problem, args.stages, **opts)
  except ValueError as e:
    msg = str(e)
    if "need 1 <= S <= d" in msg:
      msg = f"--stages {args.stages} must be <= the problem dimension d ({msg.split('d=')[-1]})"
    raise InputError(msg) from None
  try:
    rule = get_rule(args.rule, args.stages)
  except ValueError as e:
    raise InputError(f"--rule {args.rule}: {e}") from None
  ups = rule.updates_per_step
  if args.steps % ups:
    raise InputError(f"--steps {args.steps} must be a multiple of {ups} for rule {args.rule}")
  x0 = None
  if args.x0 is not None:
    from rpd.io import load_array
    v = load_array(args.x0, "--x0", ndim=1)
    if v.shape[0] != problem.d:
      raise InputError(f"--x0 {args.x0}: need a finite vector of length d={problem.d}, "
                       f"got shape {v.shape}")
    x0 = split_blocks(jnp.asarray(v, problem.init(jax.random.key(0)).dtype),
                      problem.block_sizes)
  mesh = None
  if args.devices is not None:
    if args.devices > jax.device_count():
      raise InputError(f"--devices {args.devices}: only {jax.device_count()} devices available")
    if args.stages % args.devices:
      raise InputError(f"--devices {args.devices} does not divide --stages {args.stages}")
    mesh = jax.make_mesh((args.devices,), ("stage",))
  return problem, rule, x0, mesh


def write_run(out_dir: str, columns: dict, args, summary: dict) -> None:
  """Write ``metrics.csv`` (``columns``, the first one integer) and ``run.json`` (``args`` and
  ``summary``) into ``out_dir`` atomically: into a temporary sibling directory first, then
  moved in, so a failed or interrupted run never leaves a half-written file."""
  import numpy as np

  names = list(columns)
  os.makedirs(out_dir, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=".tmp-", dir=out_dir)
  try:
    cols = np.stack([np.asarray(columns[n]) for n in names], axis=1)
    np.savetxt(os.path.join(tmp, "metrics.csv"), cols, delimiter=",", header=",".join(names),
               comments="", fmt=["%d"] + ["%.17g"] * (len(names) - 1))
    with open(os.path.join(tmp, "run.json"), "w") as f:
      f.write(jsonout.dumps({"args": {k: v for k, v in vars(args).items()
                                      if not k.startswith("_")}, **summary}, indent=2))
    for fname in ("metrics.csv", "run.json"):
      os.replace(os.path.join(tmp, fname), os.path.join(out_dir, fname))
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


class _Progress:
  """tqdm progress of a segmented run; the first SIGINT asks the run to stop."""

  def __init__(self, total: int, quiet: bool):
    import signal

    from tqdm import tqdm
    self.stop = False
    self.bar = tqdm(total=total, unit="it", disable=True if quiet else None, leave=False,
                    dynamic_ncols=True)
    self._signal = signal
    self._old = signal.signal(signal.SIGINT, self._on_sigint)
    print(f"rpd train: running {total} iterations (Ctrl-C stops at the next record and keeps "
          "what finished)", file=sys.stderr, flush=True)

  def _on_sigint(self, signum, frame):
    self.stop = True
    self._signal.signal(self._signal.SIGINT, self._old)  # a second Ctrl-C: the default

  def __call__(self, k, metrics) -> bool:
    self.bar.update(int(k) - self.bar.n)
    self.bar.set_postfix(loss=f"{float(metrics['loss'][-1]):.4g}", refresh=False)
    return self.stop

  def close(self):
    self.bar.close()
    if self._signal.getsignal(self._signal.SIGINT) == self._on_sigint:
      self._signal.signal(self._signal.SIGINT, self._old)


def run(args) -> int:
  """Run, write ``metrics.csv`` and ``run.json`` atomically into ``--out``, print a summary.

  The run goes in segments (one per record) with a progress bar; Ctrl-C stops it at the
  next record, writes what finished and exits with code 130.
  """
  if args.record_every is not None and args.steps % args.record_every:
    raise InputError(f"--record-every {args.record_every} must divide --steps {args.steps}")
  if args.devices is not None and "jax" not in __import__("sys").modules:
    # On a CPU-only machine, expose this many host devices (harmless on GPU/TPU hosts).
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={args.devices}").strip()
  out_dir = args.out or _default_out(args)
  from rpd import guards
  guards.check_writable_dir(out_dir, "--out")  # before any work
  guards.check_train_args(args)
  problem, rule, x0, mesh = _build(args)
  guards.check_train_buffers(problem, rule)

  import time

  import numpy as np
  import jax

  from rpd.experiments.common import metadata
  from rpd.engine import run as engine_run

  t0 = time.perf_counter()
  progress = _Progress(args.steps, quiet=args.json)
  try:
    res = engine_run(problem, rule, gamma=args.lr, K=args.steps, key=jax.random.key(args.seed),
                     optimizer=args.optimizer, record_every=args.record_every, x0=x0,
                     mesh=mesh, track_average=args.track_average, callback=progress)
  except ValueError as e:
    raise InputError(str(e)) from None
  finally:
    progress.close()
  wall = time.perf_counter() - t0
  m = dict(res.metrics)
  blowup = guards.blowup_index(m["loss"], problem.f_star)
  diverged = bool(res.diverged) or blowup is not None
  diverged_at = (int(res.diverged_at) if res.diverged else
                 int(m["k"][blowup]) if blowup is not None else None)
  names = [n for n in m if args.track_average or not n.startswith("avg_")]
  from rpd.simtime import rule_time_per_microbatch
  sim = rule_time_per_microbatch(rule)
  if sim is not None:  # loss against simulated time under this schedule (F = B = 1)
    fill, period = sim
    m["sim_time"] = fill + m["k"] / args.stages * period
    names.append("sim_time")
  metrics_file = os.path.join(out_dir, "metrics.csv")
  summary = {
      "problem": args.problem, "stages": args.stages, "rule": rule.name, "lr": args.lr,
      "steps": res.K, "seed": args.seed, "optimizer": args.optimizer,
      "initial_loss": float(m["loss"][0]), "final_loss": float(m["loss"][-1]),
      "f_star": problem.f_star, "L": problem.L, "d": problem.d,
      "final_grad_norm_sq": float(m["grad_norm_sq"][-1]),
      "diverged": diverged, "diverged_at": diverged_at,
      "interrupted": bool(res.stopped),
      "tau_max": int(rule.tau_max), "buffer_floats": int(res.buffer_floats),
      "sim_time": float(m["sim_time"][-1]) if sim is not None else None,
      "wall_seconds": round(wall, 3), "metrics_file": metrics_file,
      "metadata": metadata(args.seed, wall),
  }
  write_run(out_dir, {n: m[n] for n in names}, args, summary)
  if res.stopped:
    print(f"rpd train: interrupted after {res.K} of {args.steps} iterations; the finished "
          f"records are in {metrics_file}", file=sys.stderr)
  if args.json:
    print(jsonout.dumps(summary))
  else:
    status = f"DIVERGED at iteration {diverged_at} (exit code 3)" if diverged else "ok"
    print(f"{args.problem} S={args.stages} rule={rule.name} lr={args.lr:g} K={res.K}: "
          f"f(x0)={summary['initial_loss']:.6g} -> f(xK)={summary['final_loss']:.6g}"
          + (f" (f*={problem.f_star:.6g})" if problem.f_star is not None else "")
          + f", ||grad||^2={summary['final_grad_norm_sq']:.3g}, {status}; "
          f"{wall:.2f} s; metrics in {metrics_file}")
  if res.stopped:
    return 130
  return EXIT_DIVERGED if diverged else 0
