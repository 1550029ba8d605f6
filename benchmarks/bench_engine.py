"""Engine benchmark: iterations per second and the ratios the engine issue targets.

Command (recorded with its output in BENCHMARKS.md):

    python benchmarks/bench_engine.py [--quick] [--json FILE]

Measures, in one process, float32. Each timing is the best of ``--repeats`` runs after a
compile-and-warm-up run, and per-unit costs are *marginal*: ``(t(n2) - t(n1)) / (n2 - n1)``
for two run lengths, so the fixed cost of a run (the metric records at the start and the
end, which evaluate the full objective and two full gradients, and PipeDream's start-up
gradients) is separated out and reported on its own:

(a) the engine with ``none`` on logistic regression (d = 4096, batch 64): iterations/s;
(b) the engine with ``pipedream`` at S in {4, 16, 64}: microbatches/s (S block updates each);
(c) a plain jitted SGD loop written directly with ``lax.scan`` (the no-staleness limit);
(d) a straightforward NumPy Python loop doing the same stale PipeDream updates (weight
    stashing in dicts, one gradient per microbatch): what a researcher writes by hand;
(e) a vmapped sweep of 32 (gamma, seed) configurations against one configuration;
(f) the pure overhead of (b) over (c) on a diagonal quadratic with d = 2^16;
and the delay-buffer sizes against the engine issue's bounds.

Targets (ratios): (b)/(c) <= 1.25 per microbatch; (b) >= 100x (d); sweep(32)/one <= 4.
"""
from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import jax
import jax.numpy as jnp

from rpd.engine import buffer_floats, run, sample_key, sweep
from rpd.problems import get_problem
from rpd.rules import get_rule
from rpd.rules.program import schedule_program


def best_of(fn, repeats):
  """(best wall time over ``repeats`` calls, first-call time) of ``fn`` (blocking)."""
  t = time.perf_counter()
  fn()
  first = time.perf_counter() - t
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t)
  return min(times), first


def plain_scan(prob, gamma, n_steps):
  """(c): x <- x - gamma * g(x; xi_n), written directly, one sample per step."""
  @jax.jit
  def go(x, key):
    def step(x, n):
      return x - gamma * prob.grad(x, prob.sample(sample_key(key, n))), None
    return jax.lax.scan(step, x, jnp.arange(n_steps, dtype=jnp.int32))[0]
  x0 = prob.init(None)
  return lambda: jax.block_until_ready(go(x0, jax.random.key(0)))


def marginal(make, n1, n2, repeats):
  """(per-unit seconds, fixed seconds, first-call seconds) from runs of ``n1`` and ``n2`` units."""
  t1, first = best_of(make(n1), repeats)
  t2, _ = best_of(make(n2), repeats)
  per = (t2 - t1) / (n2 - n1)
  return per, t1 - n1 * per, first


def engine(prob, rule, gamma, K):
  return lambda: jax.block_until_ready(
      run(prob, rule, gamma=gamma, K=K, key=jax.random.key(0), record_every=K).x_SxD)


def numpy_pipedream(X, y, S, gamma, n_micro, batch, seed=0):
  """(d): PipeDream by hand in NumPy: stash dicts, one gradient per microbatch."""
  prog = schedule_program("pipedream", S)
  n, d = X.shape
  D = d // S
  rng = np.random.default_rng(seed)
  x = np.zeros((S, D), np.float32)
  stash = {o: x.copy() for o in range(-prog.R, prog.R)}
  grads = {}

  def grad_at(xh):
    idx = rng.integers(0, n, batch)
    Xb, yb = X[idx], y[idx]  # NumPy fancy indexing
    z = -yb * (Xb @ xh.reshape(-1))
    w = -yb / (1.0 + np.exp(-z))
    return (Xb.T @ w / batch).reshape(S, D).astype(np.float32)

  for o in prog.init_pending:
    grads[o] = grad_at(x)
  for m in range(n_micro):
    for kind, o, b in prog.events:
      mb = m + o
      if kind == "G":
        grads[mb] = grad_at(stash.pop(mb))
      elif kind == "R":
        stash.setdefault(mb, np.zeros((S, D), np.float32))[b] = x[b]
      else:
        x[b] -= gamma * grads[mb][b]
        if b == 0:
          grads.pop(mb, None)
  return x


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--quick", action="store_true", help="fewer microbatches and repeats")
  ap.add_argument("--repeats", type=int, default=None)
  ap.add_argument("--json", default=None, help="also write the results to this file")
  args = ap.parse_args()
  repeats = args.repeats or (2 if args.quick else 5)
  n_micro = 256 if args.quick else 1024
  d, batch, gamma = 4096, 64, 0.05
  out = {"device": str(jax.devices()[0]), "platform": platform.platform(),
         "jax": jax.__version__, "dtype": "float32", "d": d, "batch": batch,
         "microbatches": n_micro, "repeats": repeats, "rows": []}

  print(f"device {out['device']}; logistic n=2048 d={d} batch={batch}; float32; "
        f"marginal cost between {n_micro // 4} and {n_micro} units", flush=True)
  ratios = {}
  n1, n2 = n_micro // 4, n_micro

  def row(name, per, fixed=None, first=None):
    r = {"name": name, "per_unit_us": 1e6 * per, "units_per_s": 1.0 / per,
         "fixed_ms": None if fixed is None else 1e3 * fixed, "first_call_s": first}
    out["rows"].append(r)
    print(f"{name:50s} {r['per_unit_us']:9.1f} us/unit {r['units_per_s']:10.1f} /s"
          + (f"  fixed {r['fixed_ms']:7.1f} ms" if fixed is not None else "")
          + (f"  first call {first:5.2f} s" if first else ""), flush=True)
    return per

  def compare(prob, S, tag):
    c = row(f"(c) plain lax.scan SGD {tag}", *marginal(
        lambda n: plain_scan(prob, gamma, n), n1, n2, repeats))
    b = row(f"(b) engine pipedream S={S} {tag} /microbatch", *marginal(
        lambda n: engine(prob, get_rule("pipedream", S), gamma, S * n), n1, n2, repeats))
    return b, c

  for S in (4, 16, 64):
    prob = get_problem("logistic", S, n=2048, d=d, batch=batch, seed=0, dtype=jnp.float32)
    b, c = compare(prob, S, f"[logistic S={S}]")
    ratios[f"logistic pipedream/plain S={S}"] = b / c
    if S == 16:
      a = row(f"(a) engine none S={S} /iteration", *marginal(
          lambda n: engine(prob, get_rule("none", S), gamma, n), n1, n2, repeats))
      Xn, yn = np.asarray(prob.X), np.asarray(prob.y)
      nd1, nd2 = (16, 64) if args.quick else (32, 128)
      dd = row(f"(d) NumPy loop pipedream S={S} /microbatch", *marginal(
          lambda n: (lambda: numpy_pipedream(Xn, yn, S, gamma, n, batch)), nd1, nd2, 1))
      ratios[f"logistic numpy/pipedream S={S}"] = dd / b
      # (e) vmapped sweep of 32 configurations vs one
      gam = np.geomspace(0.01, 0.1, 32)
      seeds = np.arange(32)

      def sw(N):
        return lambda n: (lambda: jax.block_until_ready(sweep(
            prob, get_rule("pipedream", S), gammas=gam[:N], seeds=seeds[:N], K=S * n,
            record_every=S * n).x_SxD))
      one = row(f"(e) vmapped sweep, 1 config, pipedream S={S}", *marginal(
          sw(1), n1 // 2, n2 // 2, repeats))
      many = row(f"(e) vmapped sweep, 32 configs, pipedream S={S}", *marginal(
          sw(32), n1 // 2, n2 // 2, max(1, repeats // 2)))
      ratios["sweep 32 configs / 1 config"] = many / one
  # A small problem, where per-step overhead (not the gradient) dominates: what the NumPy
  # loop's Python overhead costs against the compiled program.
  S = 16
  small = get_problem("logistic", S, n=512, d=256, batch=8, seed=0, dtype=jnp.float32)
  b = row(f"(b) engine pipedream S={S} [small logistic d=256 b=8]", *marginal(
      lambda n: engine(small, get_rule("pipedream", S), gamma, S * n), n1, n2, repeats))
  Xs, ys = np.asarray(small.X), np.asarray(small.y)
  dd = row(f"(d) NumPy loop pipedream S={S} [small logistic]", *marginal(
      lambda n: (lambda: numpy_pipedream(Xs, ys, S, gamma, n, 8)), 32, 128, 1))
  ratios[f"small logistic numpy/pipedream S={S}"] = dd / b
  print("diagonal quadratic d=2^16 (pure engine overhead)", flush=True)
  for S in (4, 16, 64):
    prob = get_problem("quadratic", S, d=2 ** 16, diagonal=True, noise=0.1, dtype=jnp.float32)
    b, c = compare(prob, S, f"[quadratic S={S}]")
    ratios[f"quadratic d=2^16 pipedream/plain S={S}"] = b / c
  mem = {}
  for S in (2, 8, 32):
    dd = 4096
    D = dd // S
    pd = buffer_floats(get_rule("pipedream", S), D)
    rp = get_rule("rpd", S)
    mem[f"S={S}"] = {"pipedream": pd, "pipedream_bound_(S+1)d": (S + 1) * dd,
                     "rpd": buffer_floats(rp, D),
                     "rpd_bound_(tau+1)d/S+d": (rp.tau_max + 1) * dd / S + dd}
  out["ratios"] = ratios
  out["memory_floats_d4096"] = mem
  print("ratios:")
  for k, v in ratios.items():
    print(f"  {k:40s} {v:8.3f}")
  print("buffer floats (d = 4096):")
  for k, v in mem.items():
    print(f"  {k}: {v}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=2)


if __name__ == "__main__":
  main()
