"""The derivation of ``rpd theory``, precomputed: ``theory/derivation.json``.

Deriving the theorem, its scalings in ``S`` and its checks takes tens of seconds; printing
it must not. :func:`build` computes everything ``rpd theory`` shows (strings that parse back
with ``sympify(s, locals=theorem.SYMBOLS)``, LaTeX, check statuses, tables at ``L = sigma2 =
Delta = 1``); :func:`load` returns the cached copy when its ``source_hash`` equals the hash of
the theory sources it was built from, and rebuilds otherwise. ``python -m
rpd.theory.cache --write`` refreshes the file; ``tests/test_theorem.py`` checks that the
cache equals a fresh build.
"""
from __future__ import annotations

import functools
import hashlib
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).parent
CACHE = HERE / "derivation.json"
SOURCES = ("theorem.py", "lemmas.py", "scaling.py", "delay.py", "certify.py", "moments.py",
           "exact.py", "check.py", "cache.py", "lemma_exact.py", "adversary.py",
           "adversarial.json", "tightness.py", "first_order.py", "first_order_adversarial.json",
           "coupled.py", "coupled_adversarial.json", "cyclic.py",
           "cyclic_adversarial.json", "smooth.py")


def source_hash() -> str:
  """sha256 of the theory sources the derivation depends on."""
  h = hashlib.sha256()
  for name in SOURCES:
    h.update((HERE / name).read_bytes())
  return h.hexdigest()


def _latex(expr) -> str:
  import sympy as sp

  from rpd.theory import theorem
  names = {theorem.sigma2: r"\sigma^{2}", theorem.Delta: r"\Delta", theorem.gamma: r"\gamma",
           theorem.tau: r"\tau"}
  return sp.latex(expr, symbol_names=names)


def build() -> dict:
  """Everything ``rpd theory`` prints, computed from scratch (slow: tens of seconds)."""
  import sympy as sp

  from rpd.theory import certify, delay, scaling, theorem
  out = {"algorithm": theorem.ALGORITHM, "symbols": sorted(theorem.SYMBOLS),
         "assumptions": [f"{a.label}: {a.statement}" for a in theorem.ASSUMPTIONS],
         "assumption_refined": f"{theorem.ASSUMPTION_REFINED.label}: "
                               f"{theorem.ASSUMPTION_REFINED.statement}",
         "tau_max_S": str(delay.tau_max_floor_form()), "variants": {}}
  for v in theorem.VARIANTS:
    th = theorem.derive(v)
    o = scaling.orders(v)
    tu = scaling.tuned(v)
    out["variants"][v] = {
        "bound": str(th["bound"]), "stale_term": str(th["stale_term"]),
        "A": str(th["A"]), "B": str(th["B"]), "C": str(th["C"]),
        "stale_read_lemma": theorem.lemma_statement(th["variant"]),
        "lemma_constants": {"a": str(th["variant"].a), "b": str(th["variant"].b)},
        "assumptions": [a.label for a in th["variant"].assumptions],
        "step_size_condition": f"{th['condition']} >= 0",
        "gamma_max": str(th["gamma_max"]),
        "multipliers": {k: str(m) for k, m in th["multipliers"].items()},
        "latex": {"bound": _latex(th["bound"]), "stale_term": _latex(th["stale_term"]),
                  "step_size_condition": _latex(th["condition"]) + r" \geq 0",
                  "gamma_max": _latex(th["gamma_max"])},
        "checks": certify.steps(v),
        "scalings": {
            "orders": {k: {"expr": str(e["expr"]), "exponent": str(e["even"][0]),
                           "leading": str(e["even"][1]), "exponent_K_mb": str(e["mb"][0]),
                           "leading_K_mb": str(e["mb"][1])}
                       for k, e in o.items() if k != "same_for_both_parities"},
            "same_for_both_parities": o["same_for_both_parities"],
            "gamma_tuned": str(tu["gamma_star"]), "bound_tuned": str(tu["bound_at_star"]),
            "comparison_with_paper": {k: {kk: (str(vv) if isinstance(vv, sp.Basic) else vv)
                                          for kk, vv in d.items()}
                                      for k, d in scaling.comparison(v).items()},
            "table_exprs": {k: str(tu[k]) for k in ("gamma_max", "gamma_nd", "K_cap",
                                                     "K_star")},
            "table": scaling.table(v),
        },
    }
  out["one_step"] = {"inequality": str(theorem.one_step()["inequality"]),
                     "multipliers": {k: str(m) for k, m in
                                     theorem.one_step()["multipliers"].items()}}
  out["columns"] = scaling.COLUMNS_DOC
  return out


@functools.cache
def load() -> dict:
  """The cached derivation if it matches the sources, else a fresh :func:`build`."""
  h = source_hash()
  try:
    data = json.loads(CACHE.read_text())
    if data.get("source_hash") == h:
      return data["derivation"]
  except (OSError, ValueError):
    pass
  return json.loads(json.dumps(build()))


def gamma_max_functions() -> dict:
  """Variant -> ``f(L, tau, S)`` numeric ``gamma_max`` (from the cached strings)."""
  import sympy as sp

  from rpd.theory import theorem
  d = load()["variants"]
  args = (theorem.L, theorem.tau, theorem.S)
  return {v: sp.lambdify(args, sp.sympify(e["gamma_max"], locals=theorem.SYMBOLS), "math")
          for v, e in d.items()}


def stale_term_functions() -> dict:
  """Variant -> ``f(gamma, L, tau, sigma2)`` numeric stale term."""
  import sympy as sp

  from rpd.theory import theorem
  d = load()["variants"]
  args = (theorem.gamma, theorem.L, theorem.tau, theorem.sigma2)
  return {v: sp.lambdify(args, sp.sympify(e["stale_term"], locals=theorem.SYMBOLS), "math")
          for v, e in d.items()}


def write() -> None:
  CACHE.write_text(json.dumps({"source_hash": source_hash(), "derivation": build()},
                              indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
  if "--write" in sys.argv[1:]:
    write()
    print(f"wrote {CACHE}")
