"""Closed form of the steady-state PipeDream delay table, derived with sympy.

The derivation follows the conventions of :mod:`rpd.schedules.core` (default durations
``F = B = 1``) and never types the answer in: every step below is computed.

Step 1 (steady-state timing). In steady state every stage of asynchronous 1F1B runs without
idle time with period ``T = F + B`` per microbatch. Write (1-based stage ``s``)
``start F(m, s) = alpha(s) + T m`` and ``end B(m, s) = beta(s) + T m``. The tight
dependencies give the recurrences

    alpha(s) = alpha(s - 1) + F                  (F(m, s) right after F(m, s - 1))
    beta(s)  = beta(s + 1) + B                   (B(m, s) right after B(m, s + 1))
    beta(s) - B = alpha(s) + F + T (S - s)       (B(m, s) right after F(m + S - s, s))

The first is solved by :func:`sympy.rsolve`, the third then gives ``beta``, and the second is
checked to hold identically (the ansatz is consistent).

Step 2 (counting). With ``F = B = 1`` all event times are integers. The read of block ``j``
by microbatch ``m`` is at ``r_j = alpha(j) + 2m``; the update of block ``i`` at
``u_i = beta(i) + 2m``; stage ``s'`` applies its updates at ``beta(s') + 2 m'``. Then

    tau[i][j] = sum_{s'=1}^{S} #{m' : r_j < beta(s') + 2m' < u_i}
              + #{s' < i : beta(s') = u_i mod 2}           (ties at u_i, ordered by stage)

and ``#{m' : lo < c + 2m' < hi} = ceil((hi - c)/2) - floor((lo - c)/2) - 1``. Substituting
``S = 2n + e_S``, ``i = 2a + e_i``, ``j = 2c + e_j``, ``s' = 2k + e_s`` with parities
``e in {0, 1}`` turns every floor into a polynomial, so the sum over ``k`` is done by
:func:`sympy.summation`. The result is a polynomial in ``(S, i, j)`` per parity class,
assembled into one :class:`sympy.Piecewise`.

Step 3 (consequences). ``tau`` is shown to be non-increasing in ``i`` and in ``j`` (its
differences are checked non-positive per parity class), so ``tau_max = tau[1][1]``; the
mean over all ``(i, j)`` is summed symbolically; ``tau_max(S) - (S^2 - S/2)`` is shown to
stay bounded with :func:`sympy.limit` on each parity branch, and its leading term comes from
the polynomial degree.

Indices in this module are 1-based as in the paper; :func:`tau_table` returns the 0-based
S x S array used everywhere else.
"""
from __future__ import annotations

import functools
import itertools

import numpy as np
import sympy as sp

S, i, j, m = sp.symbols("S i j m", integer=True, positive=True)
s = sp.Symbol("s", integer=True, positive=True)
F, B = sp.symbols("F B", positive=True)
_n, _a, _c, _k = sp.symbols("n a c k", integer=True, nonnegative=True)


@functools.cache
def steady_state_timing():
  """Step 1: solve the steady-state recurrences of asynchronous 1F1B.

  Returns:
    dict with sympy expressions ``alpha`` and ``beta`` in ``s, S, F, B`` (offset
    ``alpha(1) = 0``), the period ``T`` and ``consistent`` (True when the backward chain
    recurrence holds identically).
  """
  T = F + B
  alpha_f = sp.Function("alpha")
  alpha = sp.rsolve(alpha_f(s) - alpha_f(s - 1) - F, alpha_f(s), {alpha_f(1): 0})
  beta = sp.expand(alpha + F + T * (S - s) + B)
  consistent = sp.simplify(beta - (beta.subs(s, s + 1) + B)) == 0
  return {"alpha": sp.expand(alpha), "beta": beta, "T": T, "consistent": bool(consistent)}


def _count_open(lo, hi, c0):
  """``#{m' in Z : lo < c0 + 2 m' < hi}`` for integer-valued expressions."""
  return sp.ceiling((hi - c0) / 2) - sp.floor((lo - c0) / 2) - 1


@functools.cache
def tau_parity_cases() -> dict[tuple[int, int, int], sp.Expr]:
  """Step 2: ``tau[i][j](S)`` as a polynomial per parity class ``(S % 2, i % 2, j % 2)``."""
  tm = steady_state_timing()
  unit = {F: 1, B: 1}
  alpha = tm["alpha"].subs(unit)
  beta = tm["beta"].subs(unit)
  cases = {}
  for eS, ei, ej in itertools.product((0, 1), repeat=3):
    sub = {S: 2 * _n + eS, i: 2 * _a + ei, j: 2 * _c + ej}
    r_j = (alpha.subs(s, j) + 2 * m).subs(sub)
    u_i = (beta.subs(s, i) + 2 * m).subs(sub)
    total = sp.Integer(0)
    for es in (0, 1):
      s_k = 2 * _k + es
      c0 = beta.subs(s, s_k).subs(sub)
      count = sp.expand(_count_open(r_j, u_i, c0))
      # s' = 2k + es ranges over 1..S: k from k_lo to k_hi.
      k_lo = 1 if es == 0 else 0
      k_hi = _n + sp.floor(sp.Rational(eS - es, 2))
      total += sp.summation(count, (_k, k_lo, k_hi))
      # Ties at time u_i with a lower stage index: same parity as u_i, s' < i.
      same_parity = sp.simplify(sp.Mod(c0 - u_i, 2)) == 0
      if same_parity:
        total += sp.summation(1, (_k, k_lo, _a - 1 + sp.floor(sp.Rational(ei - es, 2))))
    back = {_n: (S - eS) / 2, _a: (i - ei) / 2, _c: (j - ej) / 2}
    cases[(eS, ei, ej)] = sp.expand(total.subs(back))
  return cases


@functools.cache
def tau_expr() -> sp.Expr:
  """The closed form ``tau[i][j](S)`` (1-based ``i`` updated block, ``j`` read block).

  The eight parity polynomials differ only in their constant term. The candidate
  ``floor(p_max)``, with ``p_max`` the parity polynomial of largest constant, is then
  *checked* against every parity class (substituting ``S = 2n + e_S`` etc. lets sympy
  evaluate the floor exactly); it is returned only if it matches all eight.

  Raises:
    AssertionError: if no single floor form matches (then use :func:`tau_parity_cases`).
  """
  cases = tau_parity_cases()
  consts = {k: v.subs({S: 0, i: 0, j: 0}) for k, v in cases.items()}
  top = max(cases, key=lambda k: consts[k])
  candidate = sp.floor(cases[top])
  for (eS, ei, ej), expr in cases.items():
    sub = {S: 2 * _n + eS, i: 2 * _a + ei, j: 2 * _c + ej}
    if sp.expand(candidate.subs(sub) - expr.subs(sub)) != 0:
      raise AssertionError(f"floor form fails on parity class {(eS, ei, ej)}")
  return candidate


def _nonpositive_on_domain(expr: sp.Expr, eS: int) -> bool:
  """True if ``expr(S, i, j) <= 0`` for all ``i, j >= 1`` and ``S >= 1`` of parity ``eS``.

  Sufficient test: after ``S = S_min + 2 S0`` (``S_min`` = 2 if even, 1 if odd),
  ``i = 1 + i0``, ``j = 1 + j0`` with nonnegative ``S0, i0, j0``, every coefficient of the
  polynomial is ``<= 0``.
  """
  z = sp.symbols("S0 i0 j0", nonnegative=True)
  s_min = 2 if eS == 0 else 1
  shifted = sp.expand(expr.subs({S: s_min + 2 * z[0], i: 1 + z[1], j: 1 + z[2]}))
  if shifted == 0:
    return True
  return all(c <= 0 for c in sp.Poly(shifted, *z).coeffs())


def _per_parity_of_S(fn) -> dict[int, sp.Expr]:
  """Apply ``fn(cases, eS)`` for both parities of ``S``."""
  return {eS: sp.expand(fn(tau_parity_cases(), eS)) for eS in (0, 1)}


@functools.cache
def monotone_in_i_and_j() -> bool:
  """Step 3a: ``tau[i+1][j] <= tau[i][j]`` and ``tau[i][j+1] <= tau[i][j]`` for all parities.

  Each difference is a polynomial in ``(S, i, j)``; it is checked non-positive on the
  domain ``S, i, j >= 1`` (per parity of ``S``) by :func:`_nonpositive_on_domain`.
  """
  cases = tau_parity_cases()
  for (eS, ei, ej), expr in cases.items():
    d_i = sp.expand(cases[(eS, 1 - ei, ej)].subs(i, i + 1) - expr)
    d_j = sp.expand(cases[(eS, ei, 1 - ej)].subs(j, j + 1) - expr)
    if not (_nonpositive_on_domain(d_i, eS) and _nonpositive_on_domain(d_j, eS)):
      return False
  return True


@functools.cache
def tau_max_by_parity() -> dict[int, sp.Expr]:
  """Step 3b: ``tau_max(S) = tau[1][1](S)`` per parity of ``S`` (uses monotonicity)."""
  if not monotone_in_i_and_j():
    raise AssertionError("tau is not monotone; tau_max is not tau[1][1]")
  return _per_parity_of_S(lambda cases, eS: cases[(eS, 1, 1)].subs({i: 1, j: 1}))


@functools.cache
def tau_max_expr() -> sp.Expr:
  """``tau_max(S)`` as one Piecewise in the parity of ``S``."""
  br = tau_max_by_parity()
  if sp.expand(br[0] - br[1]) == 0:
    return br[0]
  return sp.Piecewise((br[0], sp.Eq(sp.Mod(S, 2), 0)), (br[1], True))


@functools.cache
def tau_max_floor_form() -> sp.Expr:
  """``tau_max(S)`` written without parity cases, as ``floor`` of the even branch.

  Checked (not assumed) to agree with both parity branches.
  """
  br = tau_max_by_parity()
  candidate = sp.floor(br[0])
  for eS, expr in br.items():
    n_ = sp.Symbol("n_", integer=True, nonnegative=True)
    lhs = sp.expand(candidate.subs(S, 2 * n_ + eS))
    if sp.expand(lhs - expr.subs(S, 2 * n_ + eS)) != 0:
      raise AssertionError("floor form disagrees with a parity branch")
  return candidate


@functools.cache
def own_block_by_parity() -> dict[tuple[int, int], sp.Expr]:
  """Own-block delays ``tau[i][i](S)`` per parity class ``(S % 2, i % 2)``."""
  cases = tau_parity_cases()
  return {(eS, ei): sp.expand(cases[(eS, ei, ei)].subs(j, i))
          for eS in (0, 1) for ei in (0, 1)}


@functools.cache
def mean_delay_by_parity() -> dict[int, sp.Expr]:
  """Mean of ``tau[i][j]`` over all ``S^2`` pairs, per parity of ``S``, summed symbolically."""
  cases = tau_parity_cases()
  out = {}
  for eS in (0, 1):
    total = sp.Integer(0)
    for ei, ej in itertools.product((0, 1), repeat=2):
      expr = cases[(eS, ei, ej)].subs({S: 2 * _n + eS, i: 2 * _a + ei, j: 2 * _c + ej})
      a_lo, c_lo = (1 if ei == 0 else 0), (1 if ej == 0 else 0)
      a_hi = _n + sp.floor(sp.Rational(eS - ei, 2))
      c_hi = _n + sp.floor(sp.Rational(eS - ej, 2))
      total += sp.summation(expr, (_a, a_lo, a_hi), (_c, c_lo, c_hi))
    out[eS] = sp.factor(sp.expand((total / (2 * _n + eS) ** 2).subs(_n, (S - eS) / 2)))
  return out


@functools.cache
def asymptotics() -> dict:
  """Step 3c: ``tau_max(S) = S^2 - S/2 + O(1)``, computed.

  Returns:
    dict with, per parity of ``S``: ``degree`` (of tau_max as a polynomial in S),
    ``leading`` (leading term), ``second`` (the S^1 term), ``limit_remainder``
    (``lim_{S->oo} tau_max(S) - (S^2 - S/2)``, finite means O(1)); and ``claim_holds``.
  """
  claim = S**2 - S / 2
  out = {"per_parity": {}}
  ok = True
  for eS, expr in tau_max_by_parity().items():
    poly = sp.Poly(expr, S)
    lim = sp.limit(expr - claim, S, sp.oo)
    coeffs = dict(zip([mon[0] for mon in poly.monoms()], poly.coeffs()))
    entry = {
        "degree": poly.degree(),
        "leading": coeffs.get(2, 0) * S**2,
        "second": coeffs.get(1, 0) * S,
        "limit_remainder": lim,
    }
    out["per_parity"]["even" if eS == 0 else "odd"] = entry
    ok &= bool(lim.is_finite) and poly.degree() == 2 and coeffs.get(2) == 1 and \
        coeffs.get(1) == sp.Rational(-1, 2)
  out["claim"] = claim
  out["claim_holds"] = ok
  return out


@functools.cache
def tau_evaluator():
  """Numeric evaluator ``tau(S, i, j)`` (1-based, numpy-broadcasting) from :func:`tau_expr`."""
  return sp.lambdify((S, i, j), tau_expr(), modules="numpy")


@functools.cache
def tau_max_evaluator():
  """Numeric evaluator ``tau_max(S)``."""
  return sp.lambdify(S, tau_max_expr(), modules="numpy")


@functools.cache
def _tau_case_evaluators() -> dict:
  """Numeric evaluators of :func:`tau_parity_cases`, keyed like it (lambdified once)."""
  return {k: sp.lambdify((S, i, j), v, modules="numpy") for k, v in tau_parity_cases().items()}


def tau_table(S_value: int) -> np.ndarray:
  """The closed-form steady-state table as a 0-based ``(S, S)`` int64 array.

  Args:
    S_value: number of stages, ``>= 1``.

  Returns:
    ``tau[i][j]`` with rows the updated block and columns the read block.
  """
  fns = _tau_case_evaluators()
  out = np.zeros((S_value, S_value), dtype=np.int64)
  for ii in range(1, S_value + 1):
    for jj in range(1, S_value + 1):
      key = (S_value % 2, ii % 2, jj % 2)
      out[ii - 1, jj - 1] = int(round(float(fns[key](S_value, ii, jj))))
  return out


def tau_max(S_value: int) -> int:
  """``tau_max(S)`` from the closed form."""
  return int(round(float(tau_max_evaluator()(S_value))))


def mean_delay(S_value: int) -> float:
  """Mean delay over all ``(i, j)`` from the closed form."""
  expr = mean_delay_by_parity()[S_value % 2]
  return float(expr.subs(S, S_value))


def report() -> dict:
  """Everything derived, as sympy expressions (for the CLI and the README)."""
  return {
      "timing": steady_state_timing(),
      "tau": tau_expr(),
      "tau_max": tau_max_expr(),
      "tau_max_floor": tau_max_floor_form(),
      "own_block": own_block_by_parity(),
      "mean": mean_delay_by_parity(),
      "asymptotics": asymptotics(),
  }
