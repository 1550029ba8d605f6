"""Orders in ``S`` of the RPD bound with the exact PipeDream delay, derived with sympy.

The bound of :mod:`rpd.theory.theorem` is ``A/(gamma K) + B gamma + c_s gamma^2`` with stale
coefficient ``c_s = C tau^p`` (``p = 2`` for variant ``cs``, ``1`` for ``martingale``).
Substituting ``tau = tau_max(S)`` from :mod:`rpd.theory.delay` (one polynomial per parity of
``S``, imported, not retyped) gives, per parity:

- fixed ``gamma``: the stale term ``c_s gamma^2``;
- ``gamma = c / sqrt(K)`` with ``c`` independent of ``S``: ``c_s c^2 / K``;
- the minimizer of the bound as ``K -> oo``: ``gamma* = h u(h)``, ``h = 1/sqrt(K)``, with
  ``u`` solved order by order from ``d bound / d gamma = 0`` (sympy ``series``); the stale
  term at ``gamma*`` is ``c_s A / (B K) + O(K^{-3/2})``;
- the step-size cap: ``gamma* <= gamma_max`` needs ``K >= K_cap = A / (B gamma_max^2)``;
  for fixed ``K`` and ``S -> oo`` the constrained minimizer is ``gamma_max``;
- the largest ``gamma`` at which the stale term is not the dominant one (at most the noise
  term ``B gamma``): ``gamma_nd = B / c_s``;
- the ``K`` beyond which the stale ``1/K`` term is at most the ``1/sqrt(K)`` term at the
  tuned ``gamma = sqrt(A / (B K))``: ``K_* = c_s^2 A / (4 B^3)`` (solved by sympy).

Orders come from :func:`order_in_S`: the leading term ``lc S^p`` of ``f(S)`` as ``S -> oo``
(sympy's series expansion at ``x = 1/S -> 0``).
"""
from __future__ import annotations

import functools

import sympy as sp

from rpd.theory import delay
from rpd.theory.theorem import K, L, S, VARIANTS, Delta, derive, gamma, sigma2, tau

c = sp.Symbol("c", positive=True)  # gamma = c / sqrt(K)
K_mb = sp.Symbol("K_mb", positive=True)  # microbatches: K = S K_mb block updates
_h, _u = sp.symbols("h u", positive=True)
S_VALUES = (2, 4, 8, 16, 32, 64)
PAPER = {"fixed_gamma": 4, "tuned": 4}  # Theta(gamma^2 S^4), Theta(S^4 / K)
COLUMNS_DOC = ("stale coef = stale term / gamma^2; gamma_max = largest step size of the "
               "step-size condition; gamma_nd (gamma_not_dominant) = largest gamma at which the "
               "stale term is at most the noise term B gamma; K_cap = K (block updates) from "
               "which the tuned gamma sqrt(A/(B K)) is admissible (<= gamma_max); K_star = K "
               "from which the stale term at the tuned gamma is at most its 1/sqrt(K) terms; "
               "K_needed = max(K_cap, K_star)")


_x = sp.Symbol("x", positive=True)  # x = 1/S


def order_in_S(expr: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
  """``(p, lc)`` with ``expr ~ lc S^p`` as ``S -> oo``.

  The leading term of ``expr(S = 1/x)`` as ``x -> 0+`` (sympy's ``as_leading_term``, the
  series expansion its ``limit`` is built on): ``lc x^-p``. Both ``p`` and ``lc`` are exact;
  about ten times faster than the two ``limit`` calls ``p = lim S f'(S)/f(S)``,
  ``lc = lim f(S)/S^p`` (the same values on every expression of :func:`orders`).

  Raises:
    ValueError: the leading term is not of the form ``lc S^p`` (e.g. a ``log S`` factor).
  """
  # No simplify first: as_leading_term expands far enough to see through cancellations
  # (S + 1)^2 - S^2 -> 2 S, sqrt(S^2 + S) - S -> 1/2, checked in tests/test_theorem.py), and
  # simplifying every expression cost about 85% of the time of orders().
  lead = expr.subs(S, 1 / _x).as_leading_term(_x)
  lc, q = lead.as_coeff_exponent(_x)
  if lc == 0 or lc.has(_x) or q.has(_x):
    raise ValueError(f"no leading term lc S^p for {expr}: {lead}")
  return sp.nsimplify(-q), sp.simplify(lc)


@functools.cache
def tuned(variant: str = "cs") -> dict:
  """Minimizer of the bound as ``K -> oo`` and the thresholds, in ``tau`` (not yet ``S``).

  Returns:
    dict of sympy expressions: ``gamma_star`` (two terms of its expansion),
    ``stale_at_star`` and ``bound_at_star`` (leading terms in ``1/K``), ``K_cap``,
    ``gamma_nd``, ``K_star``, ``K_star_fixed_c``, ``stale_sqrtK``.
  """
  th = derive(variant)
  A, B = th["A"], th["B"]
  cs = sp.expand(th["stale_term"] / gamma ** 2)
  bound = th["bound"]
  # d bound / d gamma = 0 at gamma = h u, K = 1/h^2, multiplied by h^0: an equation in u, h.
  eq = sp.expand(sp.diff(bound, gamma).subs(gamma, _h * _u).subs(K, 1 / _h ** 2))
  u0, u1 = sp.symbols("u0 u1")
  ser = sp.expand(sp.series(eq.subs(_u, u0 + u1 * _h), _h, 0, 2).removeO())
  probe = {L: 1, sigma2: 1, Delta: 1, S: 3, tau: 5}
  sol0 = [r for r in sp.solve(ser.coeff(_h, 0), u0) if r.subs(probe).is_positive]
  if len(sol0) != 1:
    raise AssertionError(f"leading order of the minimizer: {sol0}")
  sol1 = sp.solve(ser.coeff(_h, 1).subs(u0, sol0[0]), u1)
  u_ser = sol0[0] + sp.simplify(sol1[0]) * _h
  at_star = lambda e: sp.series(e.subs(gamma, _h * u_ser).subs(K, 1 / _h ** 2), _h, 0, 3)
  stale_ser = sp.expand(at_star(th["stale_term"]).removeO())
  bound_ser = sp.expand(at_star(bound).removeO())
  back = {_h: 1 / sp.sqrt(K)}
  gamma_nd = sp.solve(sp.Eq(cs * gamma ** 2, B * gamma), gamma)
  k_sym = sp.Symbol("k", positive=True)
  # stale at the tuned gamma = sqrt(A/(B K)) equals the 1/sqrt(K) part 2 sqrt(A B / K).
  g_t = sp.sqrt(A / (B * k_sym))
  k_star = sp.solve(sp.Eq(cs * g_t ** 2, A / (g_t * k_sym) + B * g_t), k_sym)
  g_c = c / sp.sqrt(k_sym)
  k_star_c = sp.solve(sp.Eq(cs * g_c ** 2, A / (g_c * k_sym) + B * g_c), k_sym)
  return {
      "gamma_star": sp.expand((_h * u_ser).subs(back)),
      "stale_at_star": sp.simplify(stale_ser.coeff(_h, 2) / K),
      "bound_at_star": sp.simplify(bound_ser.coeff(_h, 1) / sp.sqrt(K)
                                   + bound_ser.coeff(_h, 2) / K),
      "K_cap": sp.simplify(A / (B * th["gamma_max"] ** 2)),
      "gamma_nd": [g for g in gamma_nd if g != 0][0],
      "K_star": sp.simplify(k_star[0]),
      "K_star_fixed_c": sp.simplify(k_star_c[0]),
      "stale_sqrtK": sp.simplify(cs * c ** 2 / K),
      "gamma_max": th["gamma_max"],
      "first_at_gamma_max": sp.simplify(A / (th["gamma_max"] * K)),
      "stale_at_gamma_max": sp.simplify(cs * th["gamma_max"] ** 2),
  }


@functools.cache
def orders(variant: str = "cs") -> dict:
  """Orders in ``S`` (exponent, leading coefficient) of every scaling, per parity of ``S``.

  Returns:
    ``{name: {"even": (p, lc), "odd": (p, lc), "expr": expression in tau}}`` and
    ``"same_for_both_parities"`` (bool).
  """
  th, tu = derive(variant), tuned(variant)
  items = {
      "stale_fixed_gamma": th["stale_term"],
      "stale_gamma_c_over_sqrtK": tu["stale_sqrtK"],
      "stale_at_minimizer_K_to_inf": tu["stale_at_star"],
      "gamma_max": tu["gamma_max"],
      "K_cap": tu["K_cap"],
      "bound_first_term_at_gamma_max": tu["first_at_gamma_max"],
      "stale_at_gamma_max": tu["stale_at_gamma_max"],
      "gamma_not_dominant": tu["gamma_nd"],
      "K_star_tuned": tu["K_star"],
      "K_star_fixed_c": tu["K_star_fixed_c"],
      "bound_at_minimizer_K_to_inf": tu["bound_at_star"],
  }
  out = {}
  same = True
  for name, expr in items.items():
    entry = {"expr": expr}
    for eS, label in ((0, "even"), (1, "odd")):
      entry[label] = order_in_S(expr.subs(tau, delay.tau_max_by_parity()[eS]))
    # the same quantity with K counted in microbatches (K = S K_mb)
    entry["mb"] = order_in_S(expr.subs(K, S * K_mb).subs(tau, delay.tau_max_by_parity()[0]))
    same &= entry["even"] == entry["odd"]
    out[name] = entry
  out["same_for_both_parities"] = bool(same)
  return out


def table(variant: str = "cs", L_: float = 1.0, sigma2_: float = 1.0, Delta_: float = 1.0,
          S_values=S_VALUES) -> list[dict]:
  """Numbers for ``S`` in ``S_values`` with ``tau = tau_max(S)`` and given constants."""
  tu, th = tuned(variant), derive(variant)
  vals = {L: L_, sigma2: sigma2_, Delta: Delta_}
  rows = []
  for s_ in S_values:
    t_ = delay.tau_max(s_)
    sub = {**vals, S: s_, tau: t_}
    rows.append({
        "S": s_, "tau_max": t_,
        "stale_coef": float((th["stale_term"] / gamma ** 2).subs(sub)),
        "gamma_max": float(tu["gamma_max"].subs(sub)),
        "gamma_not_dominant": float(tu["gamma_nd"].subs(sub)),
        "K_cap": float(tu["K_cap"].subs(sub)),
        "K_star": float(tu["K_star"].subs(sub)),
    })
    rows[-1]["K_needed"] = max(rows[-1]["K_cap"], rows[-1]["K_star"])
  return rows


def table_from_exprs(exprs: dict, stale_term: str, L_: float, sigma2_: float, Delta_: float,
                     S_values=S_VALUES) -> list[dict]:
  """:func:`table` from cached expression strings (no derivation)."""
  from rpd.theory.theorem import SYMBOLS
  parse = lambda e: sp.sympify(e, locals=SYMBOLS)
  ex = {k: parse(v) for k, v in exprs.items()}
  cs = parse(stale_term) / gamma ** 2
  rows = []
  for s_ in S_values:
    sub = {L: L_, sigma2: sigma2_, Delta: Delta_, S: s_, tau: delay.tau_max(s_)}
    r = {"S": s_, "tau_max": delay.tau_max(s_), "stale_coef": float(cs.subs(sub)),
         "gamma_max": float(ex["gamma_max"].subs(sub)),
         "gamma_not_dominant": float(ex["gamma_nd"].subs(sub)),
         "K_cap": float(ex["K_cap"].subs(sub)), "K_star": float(ex["K_star"].subs(sub))}
    r["K_needed"] = max(r["K_cap"], r["K_star"])
    rows.append(r)
  return rows


def comparison(variant: str = "cs") -> dict:
  """Exponents of ``S`` in the stale term under both countings, next to the paper's.

  ``K`` counts block updates; ``K_mb = K / S`` microbatches (one microbatch updates every
  block). Upper bounds cannot contradict each other: the entry says which counting gives
  the paper's ``Theta(gamma^2 S^4)`` / ``Theta(S^4 / K)`` (``matches``: ``"block updates"``,
  ``"microbatches"``, ``"both"`` or ``"neither"``; with ``fixed gamma`` both countings agree).
  """
  o = orders(variant)
  out = {}
  for key, name, paper in (("fixed_gamma", "stale_fixed_gamma", PAPER["fixed_gamma"]),
                           ("gamma_c_over_sqrtK", "stale_gamma_c_over_sqrtK", PAPER["tuned"]),
                           ("minimizer_K_to_inf", "stale_at_minimizer_K_to_inf",
                            PAPER["tuned"])):
    ku, mb = o[name]["even"][0], o[name]["mb"][0]
    m = [n for n, e in (("block updates", ku), ("microbatches", mb)) if e == paper]
    out[key] = {"K_block_updates": sp.nsimplify(ku), "K_microbatches": sp.nsimplify(mb),
                "paper": paper,
                "matches": "both" if len(m) == 2 else (m[0] if m else (
                    "neither: a lower order (sharper bound)" if max(ku, mb) < paper
                    else "neither"))}
  return out


def _fmt_order(entry) -> str:
  p, lc = entry["even"]
  return f"`{sp.sstr(lc)} * S**({p})`"


def render_markdown_lines() -> list[str]:
  """The scaling section of THEOREM.md."""
  lines = ["## Orders in S with the exact PipeDream delay", "",
           "Orders are for K counted in block updates; the `K_mb` column counts microbatches "
           "(`K = S K_mb`).", "",
           f"`tau = tau_max(S)` from `theory/delay.py`: even S `{delay.tau_max_by_parity()[0]}`,"
           f" odd S `{delay.tau_max_by_parity()[1]}`. Leading terms (`lim S f'/f` and "
           "`lim f/S^p`, identical for both parities unless said):", ""]
  for variant in VARIANTS:
    o = orders(variant)
    lines += [f"Variant `{variant}`:", "", "| quantity | in tau | order in S | with K = S K_mb |",
              "|---|---|---|---|"]
    for name, entry in o.items():
      if name == "same_for_both_parities":
        continue
      p, lc = entry["mb"]
      lines.append(f"| {name} | `{sp.sstr(entry['expr'])}` | {_fmt_order(entry)} | "
                   f"`{sp.sstr(lc)} * S**({p})` |")
    lines += ["", f"Same order for both parities: {o['same_for_both_parities']}.", ""]
    cmp_ = comparison(variant)
    lines.append("Exponent of S in the stale term, K in block updates / K_mb = K/S in "
                 "microbatches, against the paper's: " + "; ".join(
        f"{k}: S^{v['K_block_updates']} / S^{v['K_microbatches']}, paper S^{v['paper']} "
        f"(paper's order with {v['matches']})" for k, v in cmp_.items()) + ".")
    lines += ["", f"Table (L = sigma2 = Delta = 1; columns: {COLUMNS_DOC}):", "",
              "| S | tau_max | stale coef (x gamma^2) | gamma_max | gamma_not_dominant | K_cap "
              "| K_star |", "|---|---|---|---|---|---|---|"]
    for r in table(variant):
      lines.append(f"| {r['S']} | {r['tau_max']} | {r['stale_coef']:.4g} | {r['gamma_max']:.4g} "
                   f"| {r['gamma_not_dominant']:.4g} | {r['K_cap']:.4g} | {r['K_star']:.4g} |")
    tu = tuned(variant)
    lines += ["", "How many stages can I afford: at the tuned step size `gamma = sqrt(A/(B K))` "
              f"the stale term is at most the `1/sqrt(K)` term once `K >= K_star = "
              f"{sp.sstr(tu['K_star'])}`, and that step size is admissible (`<= gamma_max`) "
              f"once `K >= K_cap = {sp.sstr(tu['K_cap'])}`; below `K_cap` the best admissible "
              "step is `gamma_max` and the bound is dominated by `A/(gamma_max K)`. "
              "The stale term stays below the noise term `B gamma` for `gamma <= "
              f"gamma_not_dominant = {sp.sstr(tu['gamma_nd'])}`.", ""]
  return lines
