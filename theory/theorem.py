"""Convergence theorem for Randomized PipeDream (RPD), derived and checked with sympy.

Algorithm (RPD, stale block SGD). ``x in R^d`` is split into ``S`` blocks, ``U_i`` embeds
block ``i``. For ``k = 0..K-1``:

    i_k ~ U{1..S},   block j of x_hat^k = x_j^{max(0, k - tau_{k,j})},
    x^{k+1} = x^k - gamma U_{i_k} g_{i_k}(x_hat^k; xi^k).

Theorem. Under :data:`ASSUMPTIONS` and the step-size condition ``1 - L gamma - a L^2 gamma^2
tau^2 >= 0`` (sufficient: ``gamma <= 1 / (2 L max(1, tau))``),

    (1/K) sum_{k<K} E||grad f(x^k)||^2 <= A / (gamma K) + B gamma + C gamma^2 tau^2

with ``A = 2 S Delta``, ``B = L sigma^2``, ``C = L^2 sigma^2`` and ``a = 1`` (variant
``cs``, the form asked by issue 4). The refined variant (``martingale``, extra assumption
A6) has ``a = 2`` and stale term ``2 L^2 sigma^2 gamma^2 tau`` (linear in ``tau``); the
``block`` variant (A6) splits the window sum into its mean over blocks plus a martingale,
``a tau = 2 (tau + S - 1) / S``: ``tau / S`` in place of ``tau`` on the gradient part, and a
step-size limit of order ``S^(-3/2) / L`` instead of ``S^(-2) / L``. None of these constants is
typed in: :func:`derive` obtains them, and the lemma checks use the same :data:`VARIANTS`
(one source of truth; :mod:`rpd.theory.certify`).

Proof as code. Each atomic fact is an inequality ``expr <= 0`` (or identity ``expr = 0``)
between scalar symbols standing for expectations; each is checked in
:mod:`rpd.theory.lemmas`. The proof is a *certificate*: sympy solves for the multipliers that
eliminate the intermediate quantities, the inequality multipliers are then checked to be
nonnegative, and what remains is the theorem. Two certificate stages:

1. One step (per k): the descent lemma, variance decomposition, per-block noise bound,
   polarization, block expectation and block smoothness eliminate the inner product
   ``I``, the second moment ``Q``, the noise ``V``, ``E||grad_i f(x^k)||^2`` and the
   gradient mismatch, leaving ``E f(x^{k+1}) - E f(x^k)`` against
   ``N_k = E||grad f(x^k)||^2``, ``G_k = E||grad_{i_k} f(x_hat^k)||^2`` and
   ``D_k = E||x^k - x_hat^k||^2``.
2. Sum over k: telescoping (:func:`sympy.Sum` ``.doit()``), the stale-read lemma (``D``),
   the window count (each index in at most ``tau`` windows) and ``f >= f*`` eliminate
   ``D``, the window sums and ``E f(x^K)``; the coefficient left on ``sum G_k`` must be
   nonnegative: that is the step-size condition.

Run ``python -m rpd.theory.certify --write`` to regenerate ``theory/THEOREM.md``.
"""
from __future__ import annotations

import dataclasses
import functools
import pathlib
import sys

import sympy as sp

from rpd.theory.delay import S

gamma = sp.Symbol("gamma", positive=True)
K = sp.Symbol("K", positive=True, integer=True)
L = sp.Symbol("L", positive=True)
tau = sp.Symbol("tau", nonnegative=True, integer=True)
sigma2 = sp.Symbol("sigma2", nonnegative=True)
Delta = sp.Symbol("Delta", nonnegative=True)

SYMBOLS = {"gamma": gamma, "K": K, "S": S, "L": L, "tau": tau, "sigma2": sigma2,
           "Delta": Delta}
"""Name -> symbol, for parsing the printed formulas back (``sympy.sympify(s, locals=...)``;
note that plain ``sympify('gamma')`` would give sympy's gamma *function*)."""


@dataclasses.dataclass(frozen=True)
class Assumption:
  """One assumption: a label, the statement, and the symbols it introduces."""
  label: str
  statement: str
  symbols: tuple[sp.Symbol, ...]


ASSUMPTIONS = (
    Assumption("A1 (smoothness)", "f is L-smooth: ||grad f(x) - grad f(y)|| <= L ||x - y|| "
               "for all x, y", (L,)),
    Assumption("A2 (lower bound)", "f(x) >= f* for all x; Delta = f(x^0) - f*", (Delta,)),
    Assumption("A3 (oracle)", "E_xi g(x; xi) = grad f(x) for all x; per block i, "
               "sup_x E||g_i(x; xi) - grad_i f(x)||^2 <= sigma_i^2 with sum_i sigma_i^2 = "
               "sigma2 (so E||g(x; xi) - grad f(x)||^2 <= sigma2); xi^k is drawn "
               "independently of everything before it and of i_k", (sigma2,)),
    Assumption("A4 (sampling)", "i_k ~ U{1..S}, independent of the past", (S,)),
    Assumption("A5 (bounded delays)", "0 <= tau_{k,j} <= tau for all k, j; reads before "
               "iteration 0 see x^0", (tau,)),
)
ASSUMPTION_REFINED = Assumption(
    "A6 (refined variant only)", "the delays tau_{k,j} depend only on k and i_k, not on the "
    "noise (true for the rpd rule: tau_{k,j} = tau[i_k][j])", ())


@dataclasses.dataclass(frozen=True)
class Fact:
  """An atomic relation ``expr <= 0`` (``kind='le'``) or ``expr = 0`` (``kind='eq'``).

  ``check`` names the function of :mod:`rpd.theory.lemmas` that verifies it.
  """
  name: str
  expr: sp.Expr
  kind: str
  check: str
  statement: str


W = sp.Symbol("W", nonnegative=True)
"""``W_k = sum_{l=max(0,k-tau)}^{k-1} G_l``, the window sum of the stale-read facts."""


@dataclasses.dataclass(frozen=True)
class Variant:
  """A stale-read lemma ``E||x^k - x_hat^k||^2 <= rhs``, ``rhs`` affine in ``W``.

  ``rhs`` is THE formula of the fact (in ``gamma, tau, S, W, sigma2``): the certificate
  (:func:`summed_facts`), the numeric bounds (:func:`lemma_bound`,
  :func:`stale_read_fn`), the exact checks and ``THEOREM.md`` all derive from it, so an edit
  here changes all of them at once. ``a`` and ``b`` are read off it:
  ``rhs = gamma^2 (a tau W + b sigma2 / S)``.
  """
  name: str
  rhs: sp.Expr
  check: str
  statement: str
  assumptions: tuple[Assumption, ...]

  @property
  def a(self) -> sp.Expr:
    """Coefficient of ``gamma^2 tau W`` in ``rhs``."""
    return sp.simplify(sp.diff(self.rhs, W) / (gamma ** 2 * tau))

  @property
  def b(self) -> sp.Expr:
    """Coefficient of ``gamma^2 sigma2 / S`` in ``rhs``."""
    return sp.simplify(self.rhs.subs(W, 0) * S / (gamma ** 2 * sigma2))


VARIANTS = {
    "cs": Variant(
        "cs", gamma ** 2 * (tau * W + tau ** 2 * sigma2 / S), "stale_read_cauchy_schwarz",
        "pathwise ||x^k - x_hat^k||^2 <= gamma^2 tau sum_{l=k-tau}^{k-1} ||g_{i_l}(x_hat^l; "
        "xi^l)||^2 (Cauchy-Schwarz), then E||g_{i_l}||^2 <= G_l + sigma2/S",
        ASSUMPTIONS),
    "martingale": Variant(
        "martingale", gamma ** 2 * (2 * tau * W + 2 * tau * sigma2 / S),
        "stale_read_martingale",
        "Young splits gradient and noise, the noise sum is a martingale (no cross terms)",
        ASSUMPTIONS + (ASSUMPTION_REFINED,)),
    "block": Variant(
        "block", gamma ** 2 * (2 * (tau + S - 1) / S * W + 2 * tau * sigma2 / S),
        "stale_read_block",
        "block j of the window sum is sum_l 1[i_l = j] (u_j^l + e_j^l) with u_j^l = grad_j f "
        "at the point block j would read at l; 1[i_l = j] = 1/S + (1[i_l = j] - 1/S) splits "
        "it into a mean over blocks (Cauchy-Schwarz: (tau/S) W_k) plus a martingale (no cross "
        "terms: (1 - 1/S) W_k + tau sigma2/S); Young's factor 2 joins them",
        ASSUMPTIONS + (ASSUMPTION_REFINED,)),
}


def lemma_statement(variant: Variant) -> str:
  """``E||x^k - x_hat^k||^2 <= <rhs>`` printed from the variant's one formula, + the proof."""
  return f"E||x^k - x_hat^k||^2 <= {variant.rhs} ({variant.statement})"


def stale_read_fn(variant_name: str):
  """``(gamma, tau, S, W, sigma2) -> rhs`` lambdified from the variant's one formula."""
  return sp.lambdify((gamma, tau, S, W, sigma2), VARIANTS[variant_name].rhs, "math")


def window_count_bound(total_G: sp.Expr) -> sp.Expr:
  """THE window-count formula: ``sum_k W_k <= tau sum_k G_k`` (each ``l`` in at most
  ``tau`` windows). The certificate, :func:`lemma_bound` and the exact count check
  (:func:`rpd.theory.lemmas.window_count`) all use it."""
  return tau * total_G


def _affine_in_W(rhs: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
  """``(coefficient of W, constant)`` of ``rhs``; raises if ``rhs`` is not affine in ``W``."""
  e = sp.expand(rhs)
  if sp.diff(e, W, 2) != 0:
    raise AssertionError(f"stale-read rhs is not affine in W: {rhs}")
  return sp.diff(e, W), e.subs(W, 0)


# Scalar stand-ins for the expectations of one step k (all expectations are full ones).
Fk, Fk1 = sp.symbols("F_k F_k1", real=True)  # E f(x^k), E f(x^{k+1})
I_, Q_, G_, V_, Ab_, Dg_, N_, D_ = sp.symbols("I Q G V Ab Dg N D", real=True)
# Sums over k = 0..K-1, and the telescoped end points.
F0, FK = sp.symbols("F_0 F_K", real=True)
SN, SG, SD, SW = sp.symbols("SN SG SD SW", real=True)
_k = sp.Symbol("k", integer=True, nonnegative=True)
_ONE_STEP_ELIMINATED = (I_, Q_, V_, Ab_, Dg_)


def one_step_facts() -> tuple[Fact, ...]:
  """The atomic facts of one iteration, as ``expr <= 0`` / ``expr = 0`` in expectations.

  Symbols: ``I = E<grad_i f(x^k), grad_i f(x_hat^k)>``, ``Q = E||g_i(x_hat^k; xi^k)||^2``,
  ``G = E||grad_i f(x_hat^k)||^2``, ``V = E||g_i - grad_i f(x_hat^k)||^2``,
  ``Ab = E||grad_i f(x^k)||^2``, ``Dg = E||grad_i f(x^k) - grad_i f(x_hat^k)||^2``,
  ``N = E||grad f(x^k)||^2``, ``D = E||x^k - x_hat^k||^2`` with ``i = i_k``.
  """
  half = sp.Rational(1, 2)
  return (
      Fact("descent", Fk1 - Fk + gamma * I_ - L * gamma ** 2 / 2 * Q_, "le", "descent_lemma",
           "E f(x^{k+1}) <= E f(x^k) - gamma I + L gamma^2/2 Q  (block descent lemma, then "
           "E over xi^k: E g = grad f at x_hat^k)"),
      Fact("variance", Q_ - G_ - V_, "eq", "variance_decomposition",
           "Q = G + V  (unbiased oracle)"),
      Fact("noise", V_ - sigma2 / S, "le", "noise_per_block",
           "V <= sigma2 / S  (A3 per block, then E over the uniform i_k)"),
      Fact("polarization", -I_ - half * (Dg_ - Ab_ - G_), "eq", "polarization",
           "-I = 1/2 (Dg - Ab - G)"),
      Fact("block_expectation", Ab_ - N_ / S, "eq", "block_expectation",
           "Ab = N / S  (x^k does not depend on i_k)"),
      Fact("smoothness", Dg_ - L ** 2 * D_, "le", "block_smoothness",
           "Dg <= L^2 D  (block difference <= full difference, A1)"),
  )


def _certificate(base: sp.Expr, facts, eliminate) -> tuple[sp.Expr, dict]:
  """Solve ``base + sum_r lam_r facts_r`` free of ``eliminate``; check the signs.

  Returns:
    (the combined expression, {fact name: multiplier}).

  Raises:
    AssertionError: if no multipliers exist or an inequality multiplier is not >= 0.
  """
  lams = sp.symbols(f"lam0:{len(facts)}")
  comb = sp.expand(base + sum(l_ * f.expr for l_, f in zip(lams, facts)))
  eqs = [comb.coeff(e) for e in eliminate]
  sol = sp.solve(eqs, lams, dict=True)
  if len(sol) != 1:
    raise AssertionError(f"no unique certificate: {sol}")
  sol = sol[0]
  mult = {}
  for l_, f in zip(lams, facts):
    value = sp.simplify(sol.get(l_, sp.Integer(0)))
    if f.kind == "le" and not nonnegative(value):
      raise AssertionError(f"multiplier of {f.name} is not >= 0: {value}")
    mult[f.name] = value
  out = sp.expand(comb.subs(sol).subs({l_: 0 for l_ in lams}))
  if any(out.has(e) for e in eliminate):
    raise AssertionError("certificate left an eliminated quantity")
  return out, mult


_S1 = sp.Symbol("S_minus_1", integer=True, nonnegative=True)


def nonnegative(expr: sp.Expr) -> bool:
  """``expr >= 0`` under the symbols' assumptions, using ``S >= 1`` (``S = 1 + S_minus_1``)."""
  e = sp.simplify(expr)
  return bool(e.is_nonnegative or sp.expand(e.subs(S, _S1 + 1)).is_nonnegative
              or sp.factor(e.subs(S, _S1 + 1)).is_nonnegative)


def verify_certificate(base: sp.Expr, facts, multipliers: dict, result: sp.Expr) -> list[str]:
  """Independent check of a certificate: ``result == base + sum_r lam_r fact_r`` exactly, and
  every inequality multiplier ``lam_r >= 0`` (sympy sign under the symbols' assumptions).

  Returns:
    the list of problems (empty when the certificate is valid).
  """
  bad = []
  comb = base + sum(multipliers[f.name] * f.expr for f in facts)
  if sp.expand(comb - result) != 0:
    bad.append("result is not base + sum of multiplier * fact")
  for f in facts:
    if f.kind == "le" and not nonnegative(multipliers[f.name]):
      bad.append(f"multiplier of {f.name} is not >= 0: {multipliers[f.name]}")
  return bad


@functools.cache
def one_step() -> dict:
  """Stage 1: the one-step inequality ``one_step <= 0`` in ``F_k1, F_k, N, G, D``.

  Returns:
    dict with ``inequality`` (expression ``<= 0``), ``multipliers`` and ``facts``.
  """
  facts = one_step_facts()
  base, rest = facts[0], facts[1:]
  ineq, mult = _certificate(base.expr, rest, _ONE_STEP_ELIMINATED)
  mult = {base.name: sp.Integer(1), **mult}
  return {"inequality": ineq, "multipliers": mult, "facts": facts}


def telescoping_holds() -> bool:
  """``sum_{k=0}^{K-1} (F(k+1) - F(k)) = F(K) - F(0)``, by :func:`sympy.Sum` ``.doit()``."""
  Fn = sp.Function("F")
  total = sp.Sum(Fn(_k + 1) - Fn(_k), (_k, 0, K - 1)).doit()
  return sp.simplify(total - (Fn(K) - Fn(0))) == 0


def summed_facts(variant: Variant) -> tuple[Fact, ...]:
  """Stage-2 facts (sums over ``k = 0..K-1``): the one-step inequality summed, the lemma,
  the window count and ``f >= f*``."""
  step = one_step()["inequality"]
  zero = {Fk1: 0, Fk: 0, N_: 0, G_: 0, D_: 0}
  c0 = step.subs(zero)
  coef = {q: step.coeff(q) for q in (Fk1, Fk, N_, G_, D_)}
  if coef[Fk1] != 1 or coef[Fk] != -1:
    raise AssertionError("one-step inequality is not of the form F_k1 - F_k + ...")
  summed = (FK - F0) + coef[N_] * SN + coef[G_] * SG + coef[D_] * SD + K * c0
  cW, c0_lemma = _affine_in_W(variant.rhs)  # sum_k rhs(W_k) = cW sum_k W_k + K rhs(0)
  return (
      Fact("summed_step", summed, "le", "telescoping",
           "sum_k of the one-step inequality, telescoped: E f(x^K) - f(x^0) + ..."),
      Fact("stale_read", SD - (cW * SW + K * c0_lemma), "le", variant.check,
           lemma_statement(variant) + "; summed over k (rhs affine in W_k)"),
      *closing_facts(),
  )


def closing_facts() -> tuple[Fact, Fact]:
  """The two stage-2 facts every certificate ends with: the window count ``sum_k W_k <= tau
  sum_k G_k`` and ``f >= f*`` (:func:`summed_facts` and the theorems of
  :mod:`rpd.theory.first_order`, :mod:`rpd.theory.coupled`, :mod:`rpd.theory.smooth`)."""
  return (Fact("window_count", SW - window_count_bound(SG), "le", "window_count",
               "sum_k W_k <= tau sum_k G_k  (each l lies in at most tau windows)"),
          Fact("lower_bound", F0 - FK - Delta, "le", "assumption A2",
               "f(x^0) - E f(x^K) <= Delta  (f >= f*)"))


@functools.cache
def derive(variant_name: str = "cs") -> dict:
  """Stage 2: the theorem for a stale-read lemma variant.

  Returns:
    dict with ``bound`` (the right-hand side), ``A``, ``B``, ``C``, ``stale_term``,
    ``condition`` (expression that must be ``>= 0``), ``gamma_max`` (its positive root),
    ``sufficient`` (the simple sufficient step size), ``multipliers``, ``facts``,
    ``variant``.
  """
  variant = VARIANTS[variant_name]
  facts = summed_facts(variant)
  final, mult = _certificate(facts[0].expr, facts[1:], (SD, SW, FK, F0))
  mult = {facts[0].name: sp.Integer(1), **mult}
  cN, cG = final.coeff(SN), final.coeff(SG)
  c0 = sp.expand(final.subs({SN: 0, SG: 0}))
  if sp.expand(final - cN * SN - cG * SG - c0) != 0 or not cN.is_positive:
    raise AssertionError(f"unexpected final form: {final}")
  # cG * SG >= 0 may be dropped from `cN SN + cG SG + c0 <= 0` when cG >= 0: the condition.
  lowest = sp.Poly(cG, gamma).terms()[-1]
  condition = sp.expand(cG / (lowest[1] * gamma ** lowest[0][0]))
  bound = sp.expand(-c0 / (cN * K))
  poly = sp.Poly(sp.expand(bound * gamma * K), gamma)
  A = poly.coeff_monomial(1)
  B = sp.simplify(poly.coeff_monomial(gamma ** 2) / K)
  stale_coef = sp.simplify(poly.coeff_monomial(gamma ** 3) / K)
  if sp.expand(A / (gamma * K) + B * gamma + stale_coef * gamma ** 2 - bound) != 0:
    raise AssertionError("bound is not of the form A/(gamma K) + B gamma + c gamma^2")
  tau_power = sp.degree(stale_coef, tau)
  C = sp.simplify(stale_coef / tau ** tau_power)
  roots = [r for r in sp.solve(sp.Eq(condition, 0), gamma)]
  gamma_max = [r for r in roots if r.subs({L: 1, tau: 3, S: 2}).is_positive]
  if len(gamma_max) != 1:
    raise AssertionError(f"step-size condition roots: {roots}")
  return {
      "variant": variant, "facts": facts, "multipliers": mult, "final": final,
      "bound": bound, "A": A, "B": B, "C": C, "tau_power": tau_power,
      "stale_term": sp.expand(C * gamma ** 2 * tau ** tau_power),
      "condition": condition, "gamma_max": sp.simplify(gamma_max[0]),
      "sufficient": 1 / (2 * L * sp.Max(1, tau)),
  }


def quadratic_condition(final: sp.Expr, SN_: sp.Expr, SG_: sp.Expr, count: sp.Expr) -> dict:
  """Split a stage-2 result ``cN SN + cG SG + c0 <= 0`` whose ``cG = (gamma/2) (1 - L gamma -
  q gamma^2)``: the condition, ``q``, the bound ``-c0 / (cN count)`` and the positive root
  ``gamma_max(q)`` of ``1 - L gamma - q gamma^2`` (used by the theorems of
  :mod:`rpd.theory.first_order`, :mod:`rpd.theory.coupled`, :mod:`rpd.theory.cyclic`).

  Raises:
    AssertionError: if the result does not have that form.
  """
  cN, cG = final.coeff(SN_), final.coeff(SG_)
  c0 = sp.expand(final - cN * SN_ - cG * SG_)
  if c0.has(SN_) or c0.has(SG_) or not cN.is_positive:
    raise AssertionError(f"unexpected final form: {final}")
  condition = sp.expand(cG / (gamma / 2))  # cG SG >= 0 may be dropped iff cG >= 0
  quad = sp.expand(-condition.coeff(gamma, 2))
  if sp.expand(condition - (1 - L * gamma - quad * gamma ** 2)) != 0:
    raise AssertionError(f"condition is not 1 - L gamma - q gamma^2: {condition}")
  q = sp.Symbol("q", positive=True)
  roots = [x for x in sp.solve(sp.Eq(1 - L * gamma - q * gamma ** 2, 0), gamma)
           if x.subs({L: 1, q: 1}).is_positive]
  if len(roots) != 1:
    raise AssertionError(f"step-size roots: {roots}")
  return {"condition": condition, "quadratic_coef": quad, "q": q, "gamma_max_in_q": roots[0],
          "bound": sp.expand(-c0 / (cN * count))}


def sufficient_step_size_holds(variant_name: str = "cs") -> bool:
  """``gamma <= 1/(2 L max(1, tau))`` implies the condition (checked with sympy).

  With ``gamma = u / (2 L tau)``, ``u in (0, 1]``, ``tau >= 1``, the condition is
  decreasing in ``u`` and non-decreasing in ``tau``, so its minimum is at ``u = tau = 1``;
  for ``tau = 0`` it is ``1 - L gamma >= 1/2``.
  """
  th = derive(variant_name)
  u = sp.Symbol("u", positive=True)
  t = sp.Symbol("t", positive=True)
  c = sp.expand(th["condition"].subs(gamma, u / (2 * L * t)).subs(tau, t))
  dec_u = sp.simplify(sp.diff(c, u)).is_nonpositive
  inc_t = sp.simplify(sp.diff(c, t)).is_nonnegative
  corner = c.subs({u: 1, t: 1})
  at_zero = th["condition"].subs(tau, 0).subs(gamma, 1 / (2 * L))
  return bool(dec_u and inc_t and corner >= 0 and at_zero >= 0)


def lemma_bound(variant_name: str, mean_G: float, gamma_: float, tau_: float, sigma2_: float,
                S_: int) -> float:
  """The averaged stale-read lemma: ``(1/K) sum_k E||x^k - x_hat^k||^2`` is at most this.

  The variant's one formula summed over ``k`` (affine in ``W``, coefficient ``>= 0``) with
  the window count ``sum_k W_k <= tau sum_k G_k``: ``rhs`` at ``W = tau mean_G``, where
  ``mean_G >= (1/K) sum_l E||grad_{i_l} f(x_hat^l)||^2``.
  """
  mG = sp.Symbol("mG", nonnegative=True)
  expr = VARIANTS[variant_name].rhs.subs(W, window_count_bound(mG))
  return float(expr.subs({mG: mean_G, gamma: gamma_, tau: tau_, sigma2: sigma2_, S: S_}))


# --- rendering -----------------------------------------------------------------------------

def summary(variant_name: str = "cs") -> dict:
  """JSON-ready summary: strings parse back with ``sympify(s, locals=SYMBOLS)``."""
  th = derive(variant_name)
  return {
      "variant": variant_name,
      "bound": str(th["bound"]),
      "stale_term": str(th["stale_term"]),
      "A": str(th["A"]), "B": str(th["B"]), "C": str(th["C"]),
      "stale_read_lemma": lemma_statement(th["variant"]),
      "step_size_condition": f"{th['condition']} >= 0",
      "gamma_max": str(th["gamma_max"]),
      "sufficient_step_size": str(th["sufficient"]),
      "assumptions": [f"{a.label}: {a.statement}" for a in th["variant"].assumptions],
      "multipliers": {k: str(v) for k, v in th["multipliers"].items()},
      "one_step_multipliers": {k: str(v) for k, v in one_step()["multipliers"].items()},
  }


ALGORITHM = ("x^{k+1} = x^k - gamma U_{i_k} g_{i_k}(x_hat^k; xi^k), i_k ~ U{1..S}, "
             "block j of x_hat^k = x_j^{max(0, k - tau_{k,j})}")


