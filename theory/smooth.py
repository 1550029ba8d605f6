"""Beyond quadratics: the any-H argument for smooth ``f`` with a Lipschitz Hessian.

The rectangle argument of :mod:`rpd.theory.coupled` needs ONE matrix for all rows ``i``: for a
quadratic, ``grad_i f(x) - grad_i f(x_hat^(i)) = [H (x - x_hat^(i))]_i``. For a general ``f``
the matrix is ``H_i = int_0^1 hess f(x_hat^(i) + t (x - x_hat^(i))) dt``, different per row.
Anchor it at the start of the window, ``Hbar = hess f(x^{k - tau})`` (fixed before every
increment of the window, so the martingale part keeps its orthogonal increments), and pay
for the difference with two extra assumptions:

A10 (Hessian-Lipschitz, bounded oracle): ``||hess f(x) - hess f(y)|| <= M ||x - y||`` and
``||g_i(x; xi)|| <= G`` almost surely for every block ``i``.

Then every point of the segment and ``x^{k - tau}`` differ by at most ``tau`` block updates,
``||H_i - Hbar|| <= M gamma tau G``, and with Young's ``b > 0``

    Dg <= (1 + b) Dl + (1 + 1/b) M^2 gamma^2 tau^2 G^2 D            (fact ``anchor``)

where ``Dl = E||[Hbar (x^k - x_hat^k)]_{i_k}||^2`` obeys the A8 mismatch lemma (``||Hbar||
<= L``; additive table) and ``D = E||x^k - x_hat^k||^2`` the ``block`` variant's lemma. The
certificate (:func:`derive`) gives a quartic condition ``1 - L gamma - q gamma^2 - r gamma^4
>= 0``: with ``M = 0`` it is exactly the A8 theorem (tested), and the extra term matters only
when ``M G`` is large: ``r = 2 (1 + b)/b M^2 G^2 tau^3 (S + tau - 1)/S``, so at ``gamma ~
1/(L S)`` (``tau ~ S^2``) ``r gamma^4 ~ (M G / L^2)^2 S^3``: the order ``1/(L S)`` survives
for ``M G <~ L^2 / S^(3/2)`` and degrades to ``gamma ~ r^(-1/4) ~ S^(-7/4) / sqrt(M G)``
beyond. A weak extension (an almost-sure gradient bound is strong), stated as such.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy as sp

from rpd.theory import coupled
from rpd.theory import theorem as th
from rpd.theory.theorem import (SG, SN, SW, D_, Delta, Dg_, F0, FK, Fact, K, L, S, W, gamma,
                                sigma2, tau)

M = sp.Symbol("M", nonnegative=True)  # Hessian-Lipschitz constant
G = sp.Symbol("G", nonnegative=True)  # almost-sure bound of every block's oracle
b = sp.Symbol("b", positive=True)  # Young: anchored part vs the Hessian's change
Dl_ = sp.Symbol("Dl", real=True)  # E||[Hbar (x^k - x_hat^k)]_{i_k}||^2
SDl, SDg, SD = sp.symbols("SDl SDg SD", real=True)

ASSUMPTION_A10 = th.Assumption(
    "A10 (Hessian-Lipschitz, bounded oracle)",
    "||hess f(x) - hess f(y)|| <= M ||x - y|| for all x, y, and ||g_i(x; xi)|| <= G almost "
    "surely for every block i; delays from an additive table (A8's, f not quadratic)", (M, G))


def anchor_fact() -> Fact:
  """``Dg <= (1 + b) Dl + (1 + 1/b) M^2 gamma^2 tau^2 G^2 D`` (A10, Young)."""
  return Fact("anchor", Dg_ - (1 + b) * Dl_ - (1 + 1 / b) * M ** 2 * gamma ** 2 * tau ** 2
              * G ** 2 * D_, "le", "anchor",
              "Dg <= (1 + b) Dl + (1 + 1/b) (M gamma tau G)^2 D: grad_i f(x) - grad_i "
              "f(x_hat) = [H_i (x - x_hat)]_i, ||H_i - hess f(x^{k-tau})|| <= M gamma tau G")


def summed_facts() -> tuple[Fact, ...]:
  """Stage 2: A8's summed step (in ``Dg``), the anchor fact summed (its ``gamma^2`` factor is
  deterministic), the A8 mismatch lemma for ``Dl``, the ``block`` lemma for ``D``, the window
  count, ``f >= f*``."""
  base = coupled.summed_facts()
  step = base[0]
  a = anchor_fact()
  anchor_sum = a.expr.subs({Dg_: SDg, Dl_: SDl, D_: SD})
  cWl, c0l = th._affine_in_W(coupled.mismatch_lemma())
  cWd, c0d = th._affine_in_W(th.VARIANTS["block"].rhs)
  return (
      step,
      Fact("anchor", anchor_sum, "le", "anchor", a.statement + ", summed over k"),
      Fact("mismatch", SDl - (cWl * SW + K * c0l), "le", "mismatch_lemma",
           "Dl <= the A8 mismatch lemma (Hbar symmetric, ||Hbar|| <= L, fixed before the "
           "window), summed over k"),
      Fact("whole", SD - (cWd * SW + K * c0d), "le", "stale_read_block",
           "D <= the block variant's lemma, summed over k"),
      *th.closing_facts(),
  )


@functools.cache
def derive() -> dict:
  """The theorem under A1-A6, A10 and an additive table, for every ``a, b > 0``.

  Returns:
    dict: ``final``, ``multipliers``, ``condition`` (``1 - L gamma - q gamma^2 - r gamma^4
    >= 0``), ``q``, ``r``, ``bound`` (right side of ``(1/K) sum_k E||grad f(x^k)||^2``).
  """
  facts = summed_facts()
  final, mult = th._certificate(facts[0].expr, facts[1:], (SDg, SDl, SD, SW, FK, F0))
  cN, cG = final.coeff(SN), final.coeff(SG)
  c0 = sp.expand(final - cN * SN - cG * SG)
  if c0.has(SN) or c0.has(SG) or not cN.is_positive:
    raise AssertionError(f"unexpected final form: {final}")
  condition = sp.expand(cG / (gamma / 2))
  q, r = -condition.coeff(gamma, 2), -condition.coeff(gamma, 4)
  if sp.expand(condition - (1 - L * gamma - q * gamma ** 2 - r * gamma ** 4)) != 0:
    raise AssertionError(f"condition is not 1 - L gamma - q gamma^2 - r gamma^4: {condition}")
  return {"facts": facts, "multipliers": mult, "final": final, "condition": condition,
          "q": sp.factor(q), "r": sp.factor(r), "bound": sp.expand(-c0 / (cN * K))}


def gamma_max(S_: int, tau_: int, L_: float, M_: float, G_: float, a_: float | None = None,
              b_: float = 1.0) -> float:
  """The largest ``gamma`` with the condition ``>= 0`` (``a_ = None``: A8's ``a*``); the
  condition decreases in ``gamma``, so this is its only positive root."""
  d = derive()
  a_ = math.sqrt(S_ / max(tau_, 1)) if a_ is None else a_
  vals = {S: S_, tau: tau_, L: L_, M: M_, G: G_, coupled.a: a_, b: b_}
  cond = sp.lambdify(gamma, d["condition"].subs(vals), "math")
  lo, hi = 0.0, 1.0 / L_
  for _ in range(200):
    mid = 0.5 * (lo + hi)
    lo, hi = (mid, hi) if cond(mid) >= 0 else (lo, mid)
  return lo


def markdown_lines() -> list[str]:
  """THEOREM.md: the non-quadratic extension and its checks."""
  d = derive()
  rows = []
  from rpd.theory import stability
  for s_ in (2, 8, 32):
    t = int(stability.delay_table(s_).max())
    a8 = coupled.gamma_max(s_, t)
    rows.append((s_, a8, *[gamma_max(s_, t, 1.0, mg, 1.0) for mg in (0.0, 0.1, 1.0)]))
  return [
      "## Beyond quadratics: Hessian-Lipschitz f (A10)", "",
      "**Status: proved** (sympy certificate, `theory/smooth.py`) under A1-A6, an additive "
      "table, and", "",
      f"- **{ASSUMPTION_A10.label}** {ASSUMPTION_A10.statement}.", "",
      "**Proof.** The rectangle argument needs one matrix for all rows; anchor it at `Hbar = "
      "hess f(x^{k-tau})`, fixed before the window (so the martingale part keeps orthogonal "
      "increments and `||Hbar|| <= L`). Row `i` of the mismatch is `[H_i (x - x_hat^(i))]_i` "
      "with `H_i` the mean Hessian on the segment; every point of the segment is within "
      "`tau` block updates of `x^{k-tau}`, each of norm `<= gamma G`, so `||H_i - Hbar|| <= M "
      f"gamma tau G`. Fact `anchor`: `{anchor_fact().expr} <= 0`; `Dl` obeys the A8 mismatch "
      "lemma and `D` the `block` lemma. Certificate: "
      f"`1 - L gamma - q gamma^2 - r gamma^4 >= 0` with `q = {d['q']}` (A8's `q` times "
      f"`(1 + b)`) and `r = {d['r']}`; bound `{d['bound']}`.", "",
      "At `M = 0` it is the A8 theorem at `b -> 0` (tested). Limits (`L = G = 1`, `b = 1`, "
      "A8's `a*`, PipeDream's table): " + "; ".join(
          f"S = {s_}: A8 {a8:.4g}, A10 with M = 0 / 0.1 / 1: {m0:.4g} / {m1:.4g} / {m2:.4g}"
          for s_, a8, m0, m1, m2 in rows)
      + ". With `tau ~ S^2`, `r gamma^4 ~ (M G / L^2)^2 S^3` at `gamma ~ 1/(L S)`: the order "
      "`1/(L S)` holds while `M G <~ L^2 / S^(3/2)`; beyond, the quartic term takes over "
      "(`gamma ~ S^(-7/4) / sqrt(M G)`). A weak extension: the almost-sure bound `G` is a "
      "strong assumption. The anchor fact is checked on a non-quadratic problem by Monte Carlo "
      "(`tests/test_smooth.py`); no exact moments exist there.", ""]
