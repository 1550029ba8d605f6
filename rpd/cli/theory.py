"""``rpd theory``: the RPD convergence theorem; ``rpd theory check``: the bound against runs."""
from __future__ import annotations

import argparse
import json

from rpd.cli import finite_float, positive_int
from rpd.errors import InputError

NAME = "theory"
HELP = ("convergence theorem for Randomized PipeDream (assumptions, constants, scalings in S); "
        "'rpd theory check' measures the bound against engine runs")



def add_arguments(p: argparse.ArgumentParser) -> None:
  """Options of ``rpd theory``."""
  p.add_argument("action", nargs="?", default="show", choices=("show", "check"),
                 help="show (default): the theorem; check: measured runs against the bound")
  p.add_argument("--json", action="store_true", help="print one JSON object")
  p.add_argument("--latex", action="store_true", help="print the formulas as LaTeX")
  p.add_argument("--L", dest="L", type=finite_float("--L"), default=1.0,
                 help="smoothness constant for the S table (default 1)")
  p.add_argument("--sigma2", type=finite_float("--sigma2"), default=1.0,
                 help="noise constant sigma^2 for the S table (default 1)")
  p.add_argument("--delta", type=finite_float("--delta"), default=1.0,
                 help="Delta = f(x0) - f* for the S table (default 1)")
  p.add_argument("--quick", action="store_true",
                 help="check: the small, fast configuration set (what the tests run)")
  p.add_argument("--seeds", type=positive_int("--seeds"), default=None,
                 help="check: seeds per configuration (default 8, 4 with --quick)")


def _show(args) -> int:
  import sympy as sp

  from rpd.theory import scaling, theorem

  out = theorem.summary("cs")
  out["refined"] = theorem.summary("martingale")
  out["algorithm"] = theorem.ALGORITHM
  out["symbols"] = sorted(theorem.SYMBOLS)
  checks = {**theorem.checks("cs"), **theorem.checks("martingale")}
  out["checks"] = {k: {"passed": c.passed, "method": c.method, "instances": c.instances,
                       "tightest": c.tightest} for k, c in checks.items()}
  scal = {}
  for variant in ("cs", "martingale"):
    o = scaling.orders(variant)
    tu = scaling.tuned(variant)
    scal[variant] = {
        "orders": {k: {"expr": str(v["expr"]), "exponent": str(v["even"][0]),
                       "leading": str(v["even"][1])}
                   for k, v in o.items() if k != "same_for_both_parities"},
        "same_for_both_parities": o["same_for_both_parities"],
        "gamma_tuned": str(tu["gamma_star"]),
        "bound_tuned": str(tu["bound_at_star"]),
        "comparison_with_paper": scaling.comparison(variant),
        "table": scaling.table(variant, args.L, args.sigma2, args.delta),
    }
  out["scalings"] = scal
  out["tau_max_S"] = str(__import__("rpd.theory.delay", fromlist=["x"]).tau_max_floor_form())
  if args.json:
    if args.latex:
      out["latex"] = {"bound": sp.latex(theorem.derive("cs")["bound"]),
                      "stale_term": sp.latex(theorem.derive("cs")["stale_term"])}
    print(json.dumps(out))
    return 0
  fmt = (lambda e: sp.latex(sp.sympify(e, locals=theorem.SYMBOLS))) if args.latex else str
  print("Randomized PipeDream:", out["algorithm"])
  print("Assumptions:")
  for a in out["assumptions"]:
    print("  " + a)
  print("  " + out["refined"]["assumptions"][-1] + "  [refined theorem only]")
  for label, s in (("Theorem (cs)", out), ("Refined theorem (martingale)", out["refined"])):
    print(f"{label}: if {s['step_size_condition']} "
          f"(sufficient: gamma <= {s['sufficient_step_size']}),")
    print(f"  (1/K) sum_k E||grad f(x^k)||^2 <= {fmt(s['bound'])}")
    print(f"  A = {fmt(s['A'])}, B = {fmt(s['B'])}, C = {fmt(s['C'])}; "
          f"stale term {fmt(s['stale_term'])}")
  bad = [k for k, c in out["checks"].items() if not c["passed"]]
  print(f"Proof steps checked: {len(out['checks'])}, failed: {bad or 'none'}")
  print(f"PipeDream delay: tau_max(S) = {out['tau_max_S']}")
  for variant, sv in scal.items():
    print(f"Scalings in S ({variant}): tuned gamma ~ {fmt(sv['gamma_tuned'])}; "
          f"bound at it ~ {fmt(sv['bound_tuned'])}")
    for k, v in sv["orders"].items():
      print(f"  {k:32s} {v['leading']} * S**{v['exponent']}")
    print("  vs paper: " + "; ".join(
        f"{k} ours S^{v['ours']} paper S^{v['paper']} {'agree' if v['agree'] else 'DISAGREE'}"
        for k, v in sv["comparison_with_paper"].items()))
    print(f"  {'S':>3} {'tau_max':>8} {'stale/g^2':>11} {'gamma_max':>10} {'gamma_nd':>10} "
          f"{'K_cap':>10} {'K_star':>10} {'K_needed':>10}")
    for r in sv["table"]:
      print(f"  {r['S']:>3} {r['tau_max']:>8} {r['stale_coef']:>11.4g} {r['gamma_max']:>10.4g} "
            f"{r['gamma_not_dominant']:>10.4g} {r['K_cap']:>10.4g} {r['K_star']:>10.4g} "
            f"{r['K_needed']:>10.4g}")
  return 0


def _check(args) -> int:
  import jax
  jax.config.update("jax_enable_x64", True)
  try:
    import rpd.engine  # noqa: F401
  except ImportError as e:  # the engine is not available
    raise InputError(f"rpd theory check needs rpd.engine: {e}") from None
  from rpd.theory import check
  rows = check.run_all(quick=args.quick, seeds=args.seeds)
  scaling = None if args.quick else check.stale_scaling()
  if args.json:
    print(json.dumps({"rows": rows, "summary": check.summarize(rows),
                      "stale_scaling": scaling}))
    return 0
  print(check.format_table(rows))
  if scaling is not None:
    print(f"stale error vs S at gamma = {scaling['gamma']} (quadratic, rpd): "
          + ", ".join(f"S={s}: {v:.3g}" for s, v in zip(scaling["S"], scaling["measured_stale"]))
          + f"; fitted exponent of S {scaling['fitted_exponent']:.2f}; lemma noise parts: "
          + ", ".join(f"{k} S^{v:.2f}" for k, v in scaling["lemma_noise_exponent"].items()))
  return 0


def run(args) -> int:
  """Print the theorem, or run the measurement check."""
  if args.action == "check":
    return _check(args)
  return _show(args)
