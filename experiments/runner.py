"""Run batches of configurations through the engine or LocalSGD, vmapped and resumable.

A *batch* shares everything that fixes the compiled program (problem, rule or baseline, ``S``,
``K``, records); its configurations differ only in ``(gamma, seed)`` and run as one
:func:`rpd.engine.sweep` (or :meth:`rpd.baselines.LocalSGD.sweep`). Only the configurations
missing from the results store run; each batch's rows are appended as soon as it finishes.
"""
from __future__ import annotations

import time

import numpy as np

from rpd.experiments.common import (ResultsStore, check_interrupt, metadata,
                                    release_compiled_programs)

# Metrics stored per row (those the engine or the baseline produced).
ENGINE_METRICS = ("k", "loss", "grad_norm_sq", "stale_x_err", "stale_grad_err",
                  "avg_grad_norm_sq", "avg_stale_x_err", "avg_stale_grad_err")
LOCALSGD_METRICS = ("k", "time", "loss", "grad_norm_sq", "drift_x_err")


def build_problem(spec: dict, S: int):
  """Problem from ``{"name": ..., "options": {...}}`` with ``S`` blocks.

  ``charlm`` is built by :func:`rpd.problems.charlm.make_charlm` with every option of the
  config (corpus size, evaluation set, ``text``, ...), since the registry's builder accepts
  only a few of them; every other name goes through :func:`rpd.problems.get_problem`.
  """
  from rpd.problems import get_problem
  name, options = spec["name"], dict(spec.get("options", {}))
  base, _, arg = name.partition(":")
  if base == "charlm":
    from rpd.problems.charlm import make_charlm
    if arg:
      options["text"] = arg
    return make_charlm(S, **options)
  return get_problem(name, S, **options)


def reference_f_star(problem) -> float | None:
  """``problem.f_star``, or for logistic regression (``X``, ``y``, ``lam`` fields) ``min f``
  computed by damped Newton's method in float64 on the full data (gradient norm < 1e-10)."""
  if problem.f_star is not None:
    return float(problem.f_star)
  if not all(hasattr(problem, a) for a in ("X", "y")):
    return None
  X = np.asarray(problem.X, np.float64)
  y = np.asarray(problem.y, np.float64)
  lam = float(getattr(problem, "lam", 0.0) or 0.0)
  n, d = X.shape
  f = lambda w: np.mean(np.logaddexp(0.0, -y * (X @ w))) + 0.5 * lam * w @ w
  w = np.zeros(d)
  for _ in range(100):
    z = y * (X @ w)
    s = 0.5 * (1.0 - np.tanh(0.5 * z))  # sigmoid(-z), stable
    g = -(X.T @ (y * s)) / n + lam * w
    if np.linalg.norm(g) < 1e-10:
      break
    Hm = (X.T * (s * (1 - s))) @ X / n + (lam + 1e-12) * np.eye(d)
    step = np.linalg.solve(Hm, g)
    t, f0 = 1.0, f(w)
    while f(w - t * step) > f0 - 0.25 * t * g @ step and t > 1e-10:
      t *= 0.5
    w = w - t * step
  return float(f(w))


def _init(problem, key):
  return problem.init(key)


_init_jit = None


def _x0(problem, init_seed: int):
  """``problem.init(key(init_seed))`` through one jitted function that takes the problem as an
  argument: problems that differ only in their data share its compiled program (a new
  ``jax.jit(problem.init)`` per batch compiled a new program every time)."""
  import jax
  global _init_jit
  if _init_jit is None:
    _init_jit = jax.jit(_init)
  return _init_jit(problem, jax.random.key(init_seed))


def engine_work(problem, rule, K: int, n: int) -> float:
  """Estimated work of an engine sweep for :func:`rpd.codegen.for_work`: floats of state a
  step reads and writes (``S * D`` parameters plus the rule's delay buffer) times ``K``
  iterations times ``n`` configurations.

  What the fast code generation slows down is XLA's own loops over this state; products with
  the data (a full gradient of the running means, ``track_average``) run in the same library
  kernels either way, and counting them made the stage sweep's batches compile optimized at a
  loss (BENCHMARKS.md, session 12: 31 s more CPU for the stage sweep)."""
  from rpd.engine_core import buffer_floats
  return float(n) * K * (problem.S * problem.D + buffer_floats(rule, problem.D))


def localsgd_work(problem, H: int, rounds: int, n: int) -> float:
  """Estimated work of a LocalSGD sweep (``W = S`` workers) for :func:`rpd.codegen.for_work`:
  ``S * D`` floats per local step, ``rounds * H`` steps per worker, ``S`` workers, ``n``
  configurations."""
  return float(n) * rounds * H * problem.S * problem.S * problem.D


def batch_configs(base: dict, problem_spec: dict, rule_spec: str, S: int, gammas, seeds,
                  K: int, record_every: int, init_seed: int = 0) -> list[dict]:
  """The configurations (result-store keys) of one engine batch, in order."""
  return [dict(base, problem=problem_spec, rule=rule_spec, S=S, K=K,
               record_every=record_every, gamma=float(g), seed=int(s), init_seed=init_seed)
          for g, s in zip(gammas, seeds)]


def run_engine_batch(store: ResultsStore, base: dict, problem_spec: dict, rule_spec: str,
                     S: int, gammas, seeds, K: int, record_every: int,
                     track_average: bool = False, init_seed: int = 0,
                     metrics=None) -> int:
  """Run the missing ``(gamma, seed)`` configurations of one engine batch.

  Args:
    store: the results store.
    base: fields common to every row's config (experiment name, ...).
    problem_spec: ``{"name", "options"}``; rule_spec: an engine rule spec.
    S, K, record_every: stages, iterations, record interval.
    gammas, seeds: the configurations (equal lengths).
    track_average: record the exact running means (``avg_*`` metrics).
    init_seed: seed of ``x0 = problem.init`` (shared by every configuration).
    metrics: the record metrics the experiment reads (default all, :func:`rpd.engine.sweep`);
      the others are neither computed nor stored. Not part of the configuration: the
      iterates and the metrics computed do not depend on it.

  Returns:
    the number of configurations that ran.
  """
  from rpd import codegen
  from rpd.engine import sweep
  from rpd.rules import get_rule
  configs = batch_configs(base, problem_spec, rule_spec, S, gammas, seeds, K, record_every,
                          init_seed)
  todo = store.missing(configs)
  if not todo:
    return 0
  check_interrupt()
  t0 = time.time()
  problem = build_problem(problem_spec, S)
  rule = get_rule(rule_spec, S)
  f_ref = reference_f_star(problem)
  res = sweep(problem, rule, gammas=np.array([c["gamma"] for c in todo]),
              seeds=np.array([c["seed"] for c in todo]), K=K, record_every=record_every,
              x0=_x0(problem, init_seed), track_average=track_average, metrics=metrics,
              codegen=codegen.for_work(engine_work(problem, rule, K, len(configs)),
                                       codegen.process_default()))
  wall = time.time() - t0
  rows = []
  for n, c in enumerate(todo):
    result = {m: res.metrics[m][n] for m in ENGINE_METRICS if m in res.metrics}
    result.update(diverged=bool(res.diverged[n]), diverged_at=int(res.diverged_at[n]),
                  buffer_floats=int(res.buffer_floats), tau_max=int(rule.tau_max),
                  f_star=f_ref, d=problem.d)
    rows.append((c, result, metadata(seed=c["seed"], wall_s=wall / len(todo))))
  store.add(rows)
  release_compiled_programs()  # a long run must not exhaust the process's mappings
  return len(todo)


def run_localsgd_batch(store: ResultsStore, base: dict, problem_spec: dict, H: int, S: int,
                       gammas, seeds, rounds: int, record_every: int, cost,
                       init_seed: int = 0, metrics=("loss", "grad_norm_sq")) -> int:
  """Run the missing ``(gamma, seed)`` configurations of one LocalSGD batch (``W = S``);
  ``metrics``: as in :func:`run_engine_batch` (:meth:`rpd.baselines.LocalSGD.sweep`)."""
  from rpd import codegen
  from rpd.baselines import LocalSGD
  configs = [dict(base, problem=problem_spec, method="localsgd", H=H, S=S, rounds=rounds,
                  record_every=record_every, gamma=float(g), seed=int(s), init_seed=init_seed)
             for g, s in zip(gammas, seeds)]
  todo = store.missing(configs)
  if not todo:
    return 0
  check_interrupt()
  t0 = time.time()
  problem = build_problem(problem_spec, S)
  f_ref = reference_f_star(problem)
  res = LocalSGD(H=H).sweep(problem, gammas=np.array([c["gamma"] for c in todo]),
                            seeds=np.array([c["seed"] for c in todo]), rounds=rounds,
                            record_every=record_every, x0=_x0(problem, init_seed), cost=cost,
                            metrics=metrics,
                            codegen=codegen.for_work(localsgd_work(problem, H, rounds,
                                                                   len(configs)),
                                                     codegen.process_default()))
  wall = time.time() - t0
  rows = []
  for n, c in enumerate(todo):
    result = {m: res.metrics[m][n] for m in LOCALSGD_METRICS if m in res.metrics}
    result.update(diverged=bool(res.diverged[n]), diverged_at=int(res.diverged_at[n]),
                  f_star=f_ref, d=problem.d)
    rows.append((c, result, metadata(seed=c["seed"], wall_s=wall / len(todo))))
  store.add(rows)
  release_compiled_programs()  # a long run must not exhaust the process's mappings
  return len(todo)
