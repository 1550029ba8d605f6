"""``rpd theory``: the RPD convergence theorem; ``rpd theory check``: the bound against runs."""
from __future__ import annotations

import argparse
import json
import math

from rpd.cli import finite_float, positive_int
from rpd.errors import InputError

NAME = "theory"
HELP = ("convergence theorem for Randomized PipeDream (assumptions, constants, scalings in S); "
        "'rpd theory check' measures the bound against engine runs; 'rpd theory stability' "
        "gives exact stability thresholds. Table columns: stale/g^2 = stale term / gamma^2; "
        "gamma_max = largest step size of the condition; gamma_nd = largest gamma at which "
        "the stale term is at most the noise term; K_cap = K (block updates) from which the "
        "tuned gamma is admissible; K_star = K from which the stale term at the tuned gamma "
        "is at most its 1/sqrt(K) terms; K_needed = max(K_cap, K_star)")



def add_arguments(p: argparse.ArgumentParser) -> None:
  """Options of ``rpd theory``."""
  p.add_argument("action", nargs="?", default="show",
                 choices=("show", "check", "stability", "lemma"),
                 help="show (default): the theorem; check: measured runs against the bound; "
                      "stability: exact mean / mean-square thresholds and stationary excess "
                      "on a quadratic, against gamma_max and measured runs; lemma: exact "
                      "E||x^k - x_hat^k||^2 on a given quadratic next to every variant's bound")
  p.add_argument("--json", action="store_true",
                 help="print one JSON object (strict JSON: non-finite numbers are null)")
  p.add_argument("--latex", action="store_true", help="print the formulas as LaTeX")
  p.add_argument("--L", dest="L", type=finite_float("--L"), default=1.0,
                 help="smoothness constant for the S table (default 1)")
  p.add_argument("--sigma2", type=finite_float("--sigma2"), default=1.0,
                 help="noise constant sigma^2 for the S table (default 1)")
  p.add_argument("--delta", type=finite_float("--delta"), default=1.0,
                 help="Delta = f(x0) - f* for the S table (default 1)")
  p.add_argument("--quick", action="store_true",
                 help="check: the default small configuration set (kept for old scripts)")
  p.add_argument("--full", action="store_true",
                 help="check: the full configuration set (S = 2..16, K = 4096, 8 seeds; "
                      "minutes)")
  p.add_argument("--seeds", type=positive_int("--seeds"), default=None,
                 help="check: seeds per configuration (default 8, 4 with --quick)")
  p.add_argument("--rule", choices=("rpd", "pipedream"), default="rpd",
                 help="stability: the rule (default rpd)")
  p.add_argument("--stages", type=positive_int("--stages"), default=4,
                 help="stability: number of stages S (default 4)")
  p.add_argument("--problem", choices=("isotropic", "rank1"), default="isotropic",
                 help="stability: H = L I (isotropic) or (L/S) 11' (rank1) (default isotropic)")
  p.add_argument("--gamma", type=finite_float("--gamma"), default=None,
                 help="stability: step size of the stationary excess (default 1/4 of the "
                      "mean-square threshold)")
  p.add_argument("--sigma", type=finite_float("--sigma"), default=0.1,
                 help="stability: per-coordinate gradient noise (default 0.1)")
  p.add_argument("--no-measure", action="store_true",
                 help="stability: skip the engine runs (exact quantities only)")
  p.add_argument("--hessian", metavar="H.npy", default=None,
                 help="lemma: the d x d symmetric Hessian of f = 1/2 x'Hx (d >= S; coordinates "
                      "are split into S contiguous blocks as numpy.array_split: the first d mod "
                      "S blocks get one coordinate more)")
  p.add_argument("--table", metavar="T.npy", default=None,
                 help="lemma: S x S nonnegative integer delays T[i][j] (block i updated, block j "
                      "read), or a (>= K+1) x S x S array T[k] of time-varying delays")
  p.add_argument("--steps", type=positive_int("--steps"), default=None,
                 help="lemma: K, the last iteration (k = 0..K are reported)")
  p.add_argument("--noise", type=finite_float("--noise", strict=False), default=None,
                 help="lemma: gradient noise N(0, SIGMA^2 I) on every coordinate (default 0)")
  p.add_argument("--noise-var", metavar="V.npy", default=None,
                 help="lemma: per-coordinate noise variances (length d) or a d x d covariance")
  p.add_argument("--x0", metavar="X.npy", default=None, help="lemma: start point (default 0)")
  p.add_argument("--order", choices=("uniform", "cyclic"), default="uniform",
                 help="lemma: i_k uniform (RPD, default) or k mod S (outside assumption A4: "
                      "the bounds are then shown for comparison only)")


def _table(variant: dict, L_: float, sigma2_: float, Delta_: float) -> list[dict]:
  """The S table: cached at ``L = sigma2 = Delta = 1``, else evaluated from the cached
  expressions."""
  sc = variant["scalings"]
  if (L_, sigma2_, Delta_) == (1.0, 1.0, 1.0):
    return sc["table"]
  from rpd.theory import scaling
  return scaling.table_from_exprs(sc["table_exprs"], variant["stale_term"], L_, sigma2_,
                                  Delta_)


def _show(args) -> int:
  from rpd.theory import cache

  d = cache.load()
  out = {"algorithm": d["algorithm"], "symbols": d["symbols"],
         "assumptions": d["assumptions"] + [d["assumption_refined"]],
         "tau_max_S": d["tau_max_S"], "columns": d["columns"], "one_step": d["one_step"]}
  main = d["variants"]["cs"]
  for k in ("bound", "stale_term", "A", "B", "C", "stale_read_lemma", "step_size_condition",
            "gamma_max", "multipliers"):
    out[k] = main[k]
  out["variants"] = {}
  for v, e in d["variants"].items():
    e = dict(e, scalings=dict(e["scalings"], table=_table(e, args.L, args.sigma2,
                                                          args.delta)))
    e["scalings"].pop("table_exprs", None)
    out["variants"][v] = e
  out["refined"] = out["variants"]["martingale"]
  out["scalings"] = {v: e["scalings"] for v, e in out["variants"].items()}
  out["checks"] = {f"{v}:{k}": c for v, e in out["variants"].items()
                   for k, c in e["checks"].items()}
  if args.json:
    print(json.dumps(_finite(out), allow_nan=False))
    return 0
  tex = args.latex
  fmt = lambda e, key: e["latex"][key] if tex else e[key]
  print("Randomized PipeDream:", out["algorithm"])
  print("Assumptions:")
  for a in out["assumptions"]:
    print("  " + a)
  for v, e in out["variants"].items():
    print(f"Theorem, variant {v} ({', '.join(e['assumptions'])}): if "
          f"{fmt(e, 'step_size_condition') if tex else e['step_size_condition']},")
    print(f"  (1/K) sum_k E||grad f(x^k)||^2 <= {fmt(e, 'bound')}")
    print(f"  stale term {fmt(e, 'stale_term')}; gamma_max = {fmt(e, 'gamma_max')}")
    n_p = sum(c["status"] == "proved" for c in e["checks"].values())
    bad = [k for k, c in e["checks"].items() if not c["passed"]]
    print(f"  proof steps: {n_p} proved, {len(e['checks']) - n_p} checked, failed: "
          f"{bad or 'none'}")
  print(f"PipeDream delay: tau_max(S) = {out['tau_max_S']}")
  print("Orders in S (exponent with K in block updates | with K_mb = K/S microbatches):")
  for v, e in out["variants"].items():
    sv = e["scalings"]
    print(f" variant {v}:")
    for k, o in sv["orders"].items():
      print(f"  {k:32s} {o['leading']} * S**{o['exponent']}   |   "
            f"{o['leading_K_mb']} * S**{o['exponent_K_mb']}")
    print("  vs paper's Theta(S^4): " + "; ".join(
        f"{k} S^{c['K_block_updates']} (K) / S^{c['K_microbatches']} (K_mb): paper's order "
        f"with {c['matches']}" for k, c in sv["comparison_with_paper"].items()))
    print(f"  {'S':>3} {'tau_max':>8} {'stale/g^2':>11} {'gamma_max':>10} {'gamma_nd':>10} "
          f"{'K_cap':>10} {'K_star':>10} {'K_needed':>10}")
    for r in sv["table"]:
      print(f"  {r['S']:>3} {r['tau_max']:>8} {r['stale_coef']:>11.4g} {r['gamma_max']:>10.4g} "
            f"{r['gamma_not_dominant']:>10.4g} {r['K_cap']:>10.4g} {r['K_star']:>10.4g} "
            f"{r['K_needed']:>10.4g}")
  print(f"Columns: {out['columns']} (L = {args.L}, sigma2 = {args.sigma2}, "
        f"Delta = {args.delta}).")
  return 0


def _check(args) -> int:
  from rpd.guards import MAX_THEORY_SEEDS, check_count
  check_count(args.seeds or 0, "--seeds", MAX_THEORY_SEEDS, "each seed reruns every configuration")
  import jax
  jax.config.update("jax_enable_x64", True)
  try:
    import rpd.engine  # noqa: F401
  except ImportError as e:  # the engine is not available
    raise InputError(f"rpd theory check needs rpd.engine: {e}") from None
  from rpd.theory import check
  if args.quick and args.full:
    raise InputError("--quick and --full: choose one")
  rows = check.run_all(full=args.full, seeds=args.seeds, progress=not args.json)
  scaling = check.stale_scaling() if args.full else None
  bad = check.violations(rows)
  if args.json:
    print(json.dumps(_finite({"rows": rows, "summary": check.summarize(rows),
                              "stale_scaling": scaling, "violations": bad}), allow_nan=False))
    return 1 if bad else 0
  print(check.format_table(rows))
  if scaling is not None:
    print(f"stale error vs S at gamma = {scaling['gamma']} (quadratic, rpd): "
          + ", ".join(f"S={s}: {v:.3g}" for s, v in zip(scaling["S"], scaling["measured_stale"]))
          + f"; fitted exponent of S {scaling['fitted_exponent']:.2f}; lemma noise parts: "
          + ", ".join(f"{k} S^{v:.2f}" for k, v in scaling["lemma_noise_exponent"].items()))
  if bad:
    print(f"VIOLATED ({len(bad)} rows inside the assumptions): " + "; ".join(bad))
  return 1 if bad else 0


def _finite(obj):
  """Replace non-finite floats by ``None`` (strict JSON)."""
  if isinstance(obj, float):
    return obj if math.isfinite(obj) else None
  if isinstance(obj, dict):
    return {k: _finite(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_finite(v) for v in obj]
  return obj


def _stability(args) -> int:
  from rpd.guards import check_stability_stages
  from rpd.theory import stability
  check_stability_stages(args.stages)
  if args.problem == "rank1" and args.stages > stability.RANK1_MAX_S["mean"]:
    raise InputError(f"--stages {args.stages}: the rank1 problem is computed densely, "
                     f"S <= {stability.RANK1_MAX_S['mean']}")
  if args.gamma is not None and args.gamma <= 0:
    raise InputError(f"--gamma {args.gamma}: must be > 0")
  if args.sigma < 0:
    raise InputError(f"--sigma {args.sigma}: must be >= 0")
  if not args.no_measure:
    import jax
    jax.config.update("jax_enable_x64", True)
  out = stability.report(args.rule, args.stages, args.problem, args.L, gamma=args.gamma,
                         sigma=args.sigma, measure=not args.no_measure)
  if args.json:
    print(json.dumps(_finite(out), allow_nan=False))
    return 0
  f = lambda v: "n/a" if v is None else f"{v:.6g}"
  print(f"{args.rule}, S = {args.stages}, {args.problem} quadratic (L = {args.L}), "
        f"tau_max = {out['tau_max']}")
  print(f"  exact mean threshold         {f(out['mean_threshold'])}")
  print(f"  exact mean-square threshold  {f(out['mean_square_threshold'])}"
        + (f"  ({out['mean_square_note']})" if "mean_square_note" in out else ""))
  for v, g in out["gamma_max"].items():
    print(f"  theorem gamma_max ({v:10s}) {f(g)}")
  if out["measured_threshold"] is not None or not args.no_measure:
    print(f"  measured threshold           {f(out['measured_threshold'])}  bracket "
          f"{[f(b) for b in out.get('measured_bracket', [None, None])]}  (K = "
          f"{out.get('measured_K')}, one path per gamma)")
  ex = out.get("excess")
  if ex:
    print(f"  stationary E||grad f||^2 at gamma = {f(ex['gamma'])}, sigma = {f(ex['sigma'])}: "
          f"exact {f(ex['exact'])}" + (f", measured {f(ex['measured_excess'])} +- "
                                       f"{f(ex['sem'])}" if "measured_excess" in ex else ""))
    print("    bound's stale term: " + ", ".join(f"{v} {f(t)}"
                                                 for v, t in ex["bound_stale_term"].items()))
  return 0


_LEMMA_MAX_WINDOW = 4000  # dimension 1 + d (tau + 1) of the exact second-moment recursion


def _lemma_inputs(args):
  """Load and validate the files of ``rpd theory lemma`` (one-line InputError otherwise)."""
  import numpy as np

  from rpd import io
  for opt, v in (("--hessian", args.hessian), ("--table", args.table), ("--gamma", args.gamma),
                 ("--steps", args.steps)):
    if v is None:
      raise InputError(f"rpd theory lemma needs {opt}")
  if args.noise is not None and args.noise_var is not None:
    raise InputError("--noise and --noise-var: give one")
  H = io.load_array(args.hessian, "--hessian", ndim=2)
  d = H.shape[0]
  if H.shape != (d, d):
    raise InputError(f"--hessian {args.hessian!r}: need a square matrix, got shape {H.shape}")
  if not np.allclose(H, H.T, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(H).max()))):
    raise InputError(f"--hessian {args.hessian!r}: not symmetric (max |H - H'| = "
                     f"{float(np.abs(H - H.T).max()):.3g})")
  T = io.load_array(args.table, "--table", kind="i")
  K = args.steps
  if T.ndim == 2:
    S = T.shape[0]
    if T.shape != (S, S):
      raise InputError(f"--table {args.table!r}: need an S x S table, got shape {T.shape}")
  elif T.ndim == 3:
    S = T.shape[1]
    if T.shape[1:] != (S, S) or T.shape[0] < K + 1:
      raise InputError(f"--table {args.table!r}: a time-varying table needs shape (>= "
                       f"{K + 1}, S, S) for --steps {K}, got {T.shape}")
  else:
    raise InputError(f"--table {args.table!r}: need a 2-d (S x S) or 3-d (K+1 x S x S) array, "
                     f"got shape {T.shape}")
  if T.min() < 0:
    raise InputError(f"--table {args.table!r}: delays must be >= 0, found {int(T.min())}")
  if S > d:
    raise InputError(f"--table {args.table!r}: S = {S} blocks but --hessian has d = {d} < S "
                     "coordinates")
  n = 1 + d * (int(T.max()) + 1)
  if n > _LEMMA_MAX_WINDOW:
    raise InputError(f"--table {args.table!r}: max delay {int(T.max())} with d = {d} gives a "
                     f"window of dimension {n} > {_LEMMA_MAX_WINDOW} (too large for the exact "
                     "recursion)")
  if args.noise_var is not None:
    V = io.load_array(args.noise_var, "--noise-var")
    if V.shape == (d,):
      if V.min() < 0:
        raise InputError(f"--noise-var {args.noise_var!r}: variances must be >= 0, found "
                         f"{float(V.min())}")
      Sigma = np.diag(V.astype(float))
    elif V.shape == (d, d):
      if not np.allclose(V, V.T) or np.linalg.eigvalsh((V + V.T) / 2).min() < -1e-12 * max(
          1.0, float(np.abs(V).max())):
        raise InputError(f"--noise-var {args.noise_var!r}: a covariance must be symmetric "
                         "positive semidefinite")
      Sigma = (V + V.T) / 2.0
    else:
      raise InputError(f"--noise-var {args.noise_var!r}: need shape ({d},) or ({d}, {d}), got "
                       f"{V.shape}")
  else:
    Sigma = (args.noise or 0.0) ** 2 * np.eye(d)
  x0 = np.zeros(d)
  if args.x0 is not None:
    x0 = io.load_array(args.x0, "--x0", ndim=1)
    if x0.shape != (d,):
      raise InputError(f"--x0 {args.x0!r}: need shape ({d},), got {x0.shape}")
  return H.astype(float), T, Sigma, x0.astype(float), K


def _lemma(args) -> int:
  import numpy as np

  from rpd.theory import lemma_exact
  H, T, Sigma, x0, K = _lemma_inputs(args)
  m = lemma_exact.stale_moments(H, None, Sigma, T, args.gamma, x0, K, order=args.order)
  bounds = lemma_exact.lemma_bounds(m, args.gamma)
  parts = lemma_exact.blocks(H.shape[0], m["S"])
  out = {"stale_x_exact": m["D"].tolist(), "bound": {v: b.tolist() for v, b in bounds.items()},
         "k": list(range(K + 1)), "S": m["S"], "d": H.shape[0], "tau": m["tau"],
         "sigma2": m["sigma2"], "gamma": args.gamma, "order": args.order,
         "blocks": [[int(b[0]), int(b[-1]) + 1] for b in parts],
         "G_exact": m["G"].tolist(),
         "holds": {v: bool(np.all(m["D"] <= b * (1 + 1e-9) + 1e-300))
                   for v, b in bounds.items()},
         "note": "f = 1/2 x'Hx; E||x^k - x_hat^k||^2 exact (second-moment recursion); bound = "
                 "each variant's stale-read formula at W_k = sum_{l=k-tau}^{k-1} G_l (exact), "
                 "tau = max delay, sigma2 = tr Sigma"
                 + ("; cyclic order is outside assumption A4" if args.order == "cyclic" else "")}
  from rpd.theory import coupled
  out["stale_grad_exact"] = m["Dg"].tolist()  # E||[H (x^k - x_hat^k)]_{i_k}||^2
  if coupled.is_additive(T):  # the A8 mismatch lemma at its best a (theory/coupled.py)
    L_ = max(float(np.abs(np.linalg.eigvalsh(H)).max()), 1e-300)
    mb = np.asarray(coupled.target_fn("lemma", L_)(
        args.gamma, m["tau"], m["S"], lemma_exact.window_sums(m["G"], m["tau"]), m["sigma2"]),
        float) * np.ones(K + 1)
    out["mismatch_bound"] = mb.tolist()
    out["mismatch_holds"] = bool(np.all(m["Dg"] <= mb * (1 + 1e-9) + 1e-300))
  else:
    out["mismatch_bound"], out["mismatch_holds"] = None, None
  if args.json:
    print(json.dumps(_finite(out), allow_nan=False))
    return 0
  names = list(bounds)
  print(f"S = {out['S']}, d = {out['d']}, blocks {out['blocks']}, tau = {out['tau']}, sigma2 = "
        f"{out['sigma2']:.6g}, gamma = {args.gamma:g}, order {args.order}")
  print(f"{'k':>5} {'exact':>12} " + " ".join(f"{'bound_' + v:>16}" for v in names))
  for k in range(K + 1):
    print(f"{k:>5} {m['D'][k]:12.6g} " + " ".join(f"{bounds[v][k]:16.6g}" for v in names))
  print("holds: " + ", ".join(f"{v} {h}" for v, h in out["holds"].items()))
  print("mismatch lemma (A8, additive table): " + ("not applicable: the table is not "
        "additive" if out["mismatch_holds"] is None else f"holds {out['mismatch_holds']}, "
        f"max Dg/bound {max(d / b if b > 0 else 0.0 for d, b in zip(m['Dg'], out['mismatch_bound'])):.4g}"))
  return 0


def run(args) -> int:
  """Print the theorem, run the measurement check, the exact stability thresholds, or the
  exact stale-read error of ``rpd theory lemma``."""
  if args.action == "lemma":
    return _lemma(args)
  if args.action == "check":
    return _check(args)
  if args.action == "stability":
    return _stability(args)
  return _show(args)
