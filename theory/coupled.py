"""Order ``1/(L S)`` for *every* quadratic: additive delay tables, derived by sympy.

The own-block theorem (:mod:`rpd.theory.first_order`) reaches ``1/(L S)`` only for weakly
coupled blocks; its off-block term bounds ``[H (x - x_hat^(i))]_i`` by the whole stale error,
which is ``S`` times the own one. This module removes that loss for quadratics whose delay
table is *additive*,

    tau[i][j] = alpha_i + beta_j     (integers alpha_i, beta_j; PipeDream's table is one:
                                      :func:`pipedream_table_is_additive`, all S, by sympy)

Assumption A8: ``f(x) = 1/2 x'Hx - c'x`` with ``H`` symmetric, ``||H|| <= L`` (indefinite
allowed in the lemma; A2 needs ``f`` bounded below), delays ``tau_{k,j} = T_k[i_k][j]``
fixed in advance (A6) with every ``T_k`` additive and ``max T_k <= tau``.

The mismatch lemma (:func:`mismatch_lemma`), for every ``a > 0``:

    Dg_k = E||[H (x^k - x_hat^k)]_{i_k}||^2
         <= gamma^2 L^2 / S^2 [ (1 + a) tau W_k + (1 + 1/a) (S W_k + tau sigma2) ].

Why additivity matters. Row ``i`` of the stale error's image is ``sum_j H_ij sum_{l <=
tau_ij} delta_j^{k-l}``, a Hadamard product of ``H`` with 0/1 window patterns. Re-index the
lag of block ``j`` as ``l = beta_j + m``: the condition ``1 <= l <= alpha_i + beta_j`` becomes
``1 - beta_j <= m <= alpha_i``, a *column* condition times a *row* condition. For each of the
``tau`` values of ``m`` the pattern is one rectangle, ``P_m H Q_m`` with ``P_m, Q_m``
coordinate projections, and ``||P_m H Q_m|| <= ||H|| <= L``. Nothing depends on ``S``: the
Hadamard-product obstacle stated in :mod:`rpd.theory.first_order` is gone. For a general
(non-additive) table the patterns are staircases, whose Schur multiplier norm can grow like
``log S`` (triangular truncation); the lemma is not claimed there.
"""
from __future__ import annotations

import functools
import itertools
import json
import pathlib

import numpy as np
import sympy as sp

from rpd.theory import theorem as th
from rpd.theory.theorem import (SG, SN, SW, Delta, Dg_, F0, FK, Fact, K, L, S, W, gamma, sigma2,
                                tau)

a = sp.Symbol("a", positive=True)  # Young: mean part vs martingale part
SDg = sp.Symbol("SDg", real=True)  # sum_k Dg_k
U = sp.Symbol("U", nonnegative=True)  # sum over the window of sum_j E||u_j^l||^2 (= S W_k)

ASSUMPTION_A8 = th.Assumption(
    "A8 (quadratic, additive delays)",
    "f(x) = 1/2 x'Hx - c'x with H symmetric and ||H|| <= L; the delays are tau_{k,j} = "
    "T_k[i_k][j], fixed in advance (A6), with every table additive: T_k[i][j] = alpha_i + "
    "beta_j for integers alpha_i, beta_j (PipeDream's table is additive for every S)", ())


# --- additivity ------------------------------------------------------------------------------

def additive_parts(T: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
  """``(alpha, beta)`` with ``T[i][j] = alpha_i + beta_j`` (``beta_0 = 0``), or ``None``."""
  T = np.asarray(T, np.int64)
  alpha, beta = T[:, 0].copy(), T[0, :] - T[0, 0]
  return (alpha, beta) if np.array_equal(alpha[:, None] + beta[None, :], T) else None


def is_additive(T: np.ndarray) -> bool:
  """Every table of ``T`` (``(S, S)`` or ``(n, S, S)``) additive."""
  T = np.asarray(T)
  return all(additive_parts(t) is not None for t in (T if T.ndim == 3 else [T]))


def pipedream_table_is_additive() -> bool:
  """``tau[i][j] - tau[i][1] - tau[1][j] + tau[1][1] = 0`` for every ``S, i, j``, proved
  on the eight parity polynomials of :func:`rpd.theory.delay.tau_parity_cases` (the
  polynomial of ``(i, 1)`` is the class ``(S % 2, i % 2, 1)``, etc.)."""
  from rpd.theory import delay
  cases = delay.tau_parity_cases()
  i_, j_ = delay.i, delay.j
  one = {j_: 1}
  for eS, ei, ej in itertools.product((0, 1), repeat=3):
    e = (cases[(eS, ei, ej)] - cases[(eS, ei, 1)].subs(one)
         - cases[(eS, 1, ej)].subs(i_, 1) + cases[(eS, 1, 1)].subs({i_: 1, j_: 1}))
    if sp.expand(e) != 0:
      return False
  return True


# --- the mismatch lemma, step by step ----------------------------------------------------------

def mismatch_steps() -> dict:
  """The mismatch lemma, one expression per step (A8; per unit ``gamma^2``).

  Notation: ``u_j^l`` = ``grad_j f`` at the point block ``j`` reads at step ``l``
  (``F_l``-measurable), ``e^l`` the noise, ``i_l`` the block updated at ``l``; the increment
  of block ``j`` at step ``l`` is ``-gamma 1[i_l = j] (u_j^l + e_j^l)`` and its conditional
  mean ``-(gamma / S) u_j^l``. Split ``1[i_l = j] (u + e) = u/S + xi_j^l`` with
  ``E[xi^l | F_l] = 0``. Row ``i`` of ``-H (x^k - x_hat^(i)) / gamma`` is then
  ``mean_i + mart_i``, ``mean_i = (1/S) sum_j H_ij sum_{l <= tau_ij} u_j^{k-l}`` and
  ``mart_i = sum_j H_ij sum_{l <= tau_ij} xi_j^{k-l}``.

  Returns:
    dict: ``young`` (coefficients of ``sum_i ||mean_i||^2`` and ``sum_i ||mart_i||^2``),
    ``lags`` (number of skewed lags ``m``: ``max alpha + max beta = tau``), ``mean``
    (``E sum_i ||mean_i||^2 <= (tau / S^2) L^2 U``: the rectangle form ``(1/S) sum_m P_m H
    Q_m z^m``, ``z^m_j = u_j^{k - beta_j - m}``, Cauchy-Schwarz over the ``tau`` values of
    ``m``, ``||P_m H Q_m|| <= L``, and ``sum_m ||Q_m z^m||^2 <= U`` since distinct ``m`` are
    distinct lags of each block), ``second_moment`` (``E[||1[i_l = j] (u_j + e_j)||^2 summed
    over j | F_l] = (1/S) sum_j ||u_j^l||^2 + sigma2 / S``), ``martingale`` (``E sum_i
    ||mart_i||^2 = sum_l E||(H o P^l) xi^{k-l}||^2`` by orthogonal increments, ``P^l_ij =
    [l <= tau_ij]`` deterministic; a conditional variance is at most the second moment, and
    the single-block increment meets one column of ``H o P^l``, a row selection of a column
    of ``H``: ``<= L^2 (U / S + tau sigma2 / S)``), ``rows`` (Young), then ``rhs``:
    ``Dg = (gamma^2 / S) sum_i E||row_i||^2`` (``i_k`` uniform, independent of ``F_k``)
    with ``U <= S W_k`` (``sum_j E||u_j^l||^2 = S G_l`` over the last ``tau`` steps).
  """
  young = (1 + a, 1 + 1 / a)
  lags = tau
  mean = lags / S ** 2 * L ** 2 * U
  second_moment = U / S  # per window: sum_l (1/S) sum_j E||u_j^l||^2, noise added below
  martingale = L ** 2 * (second_moment + tau * sigma2 / S)
  rows = young[0] * mean + young[1] * martingale
  rhs = sp.expand(gamma ** 2 * rows.subs(U, S * W) / S)
  return {"young": young, "lags": lags, "mean": mean, "second_moment": second_moment,
          "martingale": martingale, "rows": rows, "rhs": rhs}


def mismatch_lemma() -> sp.Expr:
  """THE mismatch formula ``Dg_k <= rhs`` (affine in ``W``; A1-A6, A8)."""
  return mismatch_steps()["rhs"]


# --- the certificate -----------------------------------------------------------------------

@functools.cache
def one_step() -> sp.Expr:
  """Stage 1 without ``smoothness``: ``expr <= 0`` in ``F_k1, F_k, N, G, Dg``."""
  facts = tuple(f for f in th.one_step_facts() if f.name != "smoothness")
  ineq, _ = th._certificate(facts[0].expr, facts[1:], (th.I_, th.Q_, th.V_, th.Ab_))
  return ineq


def summed_facts() -> tuple[Fact, ...]:
  """Stage 2: the step summed over ``k``, the mismatch lemma summed, the window count and
  ``f >= f*``."""
  step = one_step()
  qs = (th.Fk1, th.Fk, th.N_, th.G_, Dg_)
  coef = {q: step.coeff(q) for q in qs}
  if coef[th.Fk1] != 1 or coef[th.Fk] != -1:
    raise AssertionError("one-step inequality is not of the form F_k1 - F_k + ...")
  rest = step.subs({q: 0 for q in qs})
  summed = (FK - F0) + coef[th.N_] * SN + coef[th.G_] * SG + coef[Dg_] * SDg + K * rest
  cW, c0 = th._affine_in_W(mismatch_lemma())
  return (
      Fact("summed_step", summed, "le", "telescoping", "sum_k of the one-step inequality"),
      Fact("mismatch", SDg - (cW * SW + K * c0), "le", "mismatch_lemma",
           f"Dg <= {mismatch_lemma()}, summed over k"),
      *th.closing_facts(),
  )


@functools.cache
def derive() -> dict:
  """The theorem under A1-A6 and A8 for every ``a > 0``, and its best step-size limit.

  Returns:
    dict: ``final`` (certificate result ``<= 0``), ``multipliers``, ``condition`` (``>= 0``
    needed), ``quadratic_coef`` (``q`` in ``1 - L gamma - q gamma^2``), ``a_star`` (sympy's
    minimizer of ``q``), ``quadratic_coef_star``, ``gamma_max`` (positive root at ``a*``),
    ``bound`` (right side of ``(1/K) sum_k E||grad f(x^k)||^2``), ``bound_mb`` (``K = S
    K_mb``), ``stale_term``.
  """
  facts = summed_facts()
  final, mult = th._certificate(facts[0].expr, facts[1:], (SDg, SW, FK, F0))
  split = th.quadratic_condition(final, SN, SG, K)
  condition, quad, bound = split["condition"], split["quadratic_coef"], split["bound"]
  roots = [x for x in sp.solve(sp.diff(quad, a), a) if x.subs({S: 4, tau: 14}).is_positive]
  if len(roots) != 1:
    raise AssertionError(f"minimizers of q in a: {roots}")
  a_star = roots[0]
  t, r = sp.symbols("t r", positive=True)  # tau = t^2, S = r^2: factor() exactly
  q_star = sp.factor(sp.expand(quad.subs(a, a_star).subs({tau: t ** 2, S: r ** 2}))
                     ).subs({t: sp.sqrt(tau), r: sp.sqrt(S)})
  K_mb = sp.Symbol("K_mb", positive=True)
  return {"facts": facts, "multipliers": mult, "final": final, "condition": condition,
          "quadratic_coef": quad, "quadratic_coef_factored": sp.factor(quad),
          "a_star": a_star, "quadratic_coef_star": q_star,
          "gamma_max_in_q": split["gamma_max_in_q"],
          "gamma_max": split["gamma_max_in_q"].subs(split["q"], q_star),
          "bound": bound, "bound_mb": sp.expand(bound.subs(K, S * K_mb)),
          "stale_term": sp.factor(sp.expand(bound - 2 * S * Delta / (gamma * K)
                                            - L * gamma * sigma2))}


@functools.cache
def _gamma_max_fn():
  return sp.lambdify((S, tau, L), derive()["gamma_max"], "math")


def gamma_max(S_: int, tau_: int, L_: float = 1.0) -> float:
  """The proved step-size limit for any quadratic with ``||H|| <= L`` and an additive table
  of maximum ``tau`` (``1/L`` when ``tau = 0``)."""
  return 1.0 / L_ if tau_ == 0 else float(_gamma_max_fn()(S_, tau_, L_))


def sufficient_step_size() -> dict:
  """An explicit constant: ``gamma <= 1/(2 L S)`` satisfies the condition for every ``S >= 2``
  with PipeDream's table, proved with sympy in three steps.

  (1) ``tau_max(S) <= S^2`` (the parity polynomials of
  :func:`rpd.theory.delay.tau_max_by_parity` are ``S^2 - S/2`` and ``S^2 - S/2 - 1/2``);
  (2) ``q*`` is increasing in ``tau``, so ``tau = S^2`` is the worst case; (3) there the
  condition at ``gamma = 1/(2 L S)`` is ``g(S) = 1 - 1/(2S) - (1 + 1/sqrt(S))^2 / 4``, which
  is increasing in ``S`` with ``g(2) > 0``.

  Returns:
    dict of the three facts (bools), ``g`` (the expression) and ``g(2)``.
  """
  from rpd.theory import delay
  d = derive()
  r = sp.Symbol("r", positive=True)  # S = r^2: sqrt-free
  tau_ok = all(sp.expand(S ** 2 - p).subs(S, r ** 2 + 1).is_nonnegative
               or sp.factor(sp.expand(S ** 2 - p).subs(S, r ** 2 + 1)).is_nonnegative
               for p in delay.tau_max_by_parity().values())
  q_inc = bool(sp.simplify(sp.diff(d["quadratic_coef_star"], tau)).is_positive)
  cond = d["condition"].subs(a, d["a_star"]).subs(gamma, 1 / (2 * L * S)).subs(tau, S ** 2)
  g = sp.simplify(cond)
  g_r = sp.expand(g.subs(S, r ** 2))
  increasing = bool(sp.factor(sp.diff(g_r, r)).is_positive)
  g2 = g.subs(S, 2)
  return {"tau_max_le_S2": bool(tau_ok), "q_increasing_in_tau": q_inc,
          "g_increasing": increasing, "g": g, "g_at_2": float(g2),
          "holds": bool(tau_ok and q_inc and increasing and g2 > 0)}


def stale_term_at(S_: int, tau_: int, gamma_: float, L_: float, sigma2_: float,
                  a_: float = 1.0) -> float | None:
  """The rate's stale term at ``a_`` (``None`` when ``gamma_`` violates the condition at
  ``a_``: the bound does not apply there)."""
  d = derive()
  vals = {S: S_, tau: tau_, L: L_, a: a_, gamma: gamma_}
  if float(d["condition"].subs(vals)) < -1e-12:  # rounding at the boundary is admitted
    return None
  return float(d["stale_term"].subs({**vals, sigma2: sigma2_}))


# --- numbers: proved limit against the exact thresholds ----------------------------------------

def threshold_table(S_values=range(2, 33), problem: str = "isotropic") -> list[dict]:
  """Proved limit (``L = 1``, PipeDream table) next to the exact mean-square threshold of rpd
  (:func:`rpd.theory.stability.thresholds`) on ``problem``."""
  from rpd.theory import stability
  rows = []
  for s in S_values:
    t = int(stability.delay_table(s).max())
    g = gamma_max(s, t)
    ex = stability.thresholds("rpd", s, problem, 1.0)["mean_square_threshold"]
    rows.append({"S": s, "tau": t, "gamma_max": g, "S_gamma_max": s * g, "exact": ex,
                 "ratio": None if ex is None else ex / g})
  return rows


# --- checks that hunt: the mismatch lemma against exact moments ------------------------------

TARGETS = ("lemma", "half_mean", "half_martingale", "tau_half_mean")


def parts() -> tuple[sp.Expr, sp.Expr]:
  """``(M, R)`` with ``mismatch_lemma() = (1 + a) M + (1 + 1/a) R``: the mean part and the
  martingale part, read off the one formula."""
  rhs = sp.expand(mismatch_lemma())
  M, R = rhs.coeff(a, 1), rhs.coeff(a, -1)
  if sp.expand(rhs - (1 + a) * M - (1 + 1 / a) * R) != 0:
    raise AssertionError(f"lemma is not (1 + a) M + (1 + 1/a) R: {rhs}")
  return M, R


@functools.cache
def _lambdified(target: str):
  """``(gamma, tau, S, W, sigma2, L) -> bound`` of a target, built once per process (the
  searches evaluate it on hundreds of instances)."""
  M, R = parts()
  best = lambda m, r: (sp.sqrt(m) + sp.sqrt(r)) ** 2
  exprs = {"lemma": best(M, R), "half_mean": best(M / 2, R), "half_martingale": best(M, R / 2),
           "tau_half_mean": best(M.subs(tau, tau / 2), R)}
  return sp.lambdify((gamma, tau, S, W, sigma2, L), exprs[target], "numpy")


def target_fn(target: str, L_: float):
  """``(gamma, tau, S, W, sigma2) -> bound`` for ``||H|| = L_``: the lemma at its best
  ``a`` (``min_a (1 + a) M + (1 + 1/a) R = (sqrt(M) + sqrt(R))^2``: it holds for every
  ``a``, so this is its strongest form) or a mutant: ``M`` or ``R`` halved, or ``tau ->
  tau/2`` in ``M``."""
  fn = _lambdified(target)
  # W_k >= 0 exactly; exact moments may round a zero G_l to -1e-20
  return lambda g, t, s, w, s2: fn(g, t, s, np.maximum(w, 0.0), s2, L_)


def ratio(inst, target: str = "lemma") -> float:
  """``max_k Dg_k / bound_k`` on one instance of :mod:`rpd.theory.adversary` (exact)."""
  from rpd.theory import adversary
  L_ = max(float(np.abs(np.linalg.eigvalsh(inst.H)).max()), 1e-12)
  return adversary.ratio(inst, target_fn(target, L_), key="Dg")


def additive_instance(rng: np.random.Generator):
  """A random member of the adversarial family restricted to additive tables: PipeDream's
  table, random ``alpha_i + beta_j``, or time-varying additive tables; ``H`` symmetric
  (indefinite allowed), dense or rank one or curvature on one block; noise on one block or
  all; ``gamma = u / (L max(1, tau))``."""
  from rpd.theory.adversary import Instance, random_quadratic
  from rpd.theory.delay import tau_table
  kind = str(rng.choice(["pipedream", "additive", "additive", "time"]))
  S_ = int(rng.choice([1, 2, 2, 3, 3, 4]))
  if S_ == 1 and kind == "pipedream":
    kind = "additive"
  if kind == "pipedream":
    T = np.asarray(tau_table(S_), int)
  else:
    hi = int(rng.integers(1, 7 if S_ > 1 else 17))
    T = rng.integers(0, hi + 1, (S_, 1)) + rng.integers(0, hi + 1, (1, S_))
  K_ = int(min(3 * max(int(T.max()), 1) + 8, 40))
  if kind == "time":
    hi = int(rng.integers(1, 5))
    T = rng.integers(0, hi + 1, (K_ + 1, S_, 1)) + rng.integers(0, hi + 1, (K_ + 1, 1, S_))
  H, Sigma, c, x0, L_ = random_quadratic(rng, S_ * int(rng.choice([1, 1, 2])))
  u = float(np.exp(rng.uniform(np.log(0.01), np.log(3.0))))
  return Instance(H, c, Sigma, T, u / (L_ * max(1, int(T.max()))), x0, K_, kind)


def search(target: str, n_random: int = 150, n_climb: int = 120, seed: int = 0):
  """Maximize :func:`ratio` of ``target`` over the additive family (random + hill climbing;
  the mean-part mutants on noiseless members, :func:`rpd.theory.adversary.search_targets`)."""
  from rpd.theory import adversary
  return adversary.search_targets(ratio, target, ("half_mean", "tau_half_mean"),
                                  additive_instance, n_random, n_climb, seed)


STORE = pathlib.Path(__file__).with_name("coupled_adversarial.json")


def load_store() -> dict:
  """``{target: Instance}`` (``python -m rpd.theory.coupled --search --write``)."""
  from rpd.theory.adversary import Instance
  return {t: Instance.from_json(d) for t, d in json.loads(STORE.read_text()).items()}


def nonadditive_search(n_random: int = 200, n_climb: int = 150, seed: int = 1):
  """Maximize the lemma's :func:`ratio` over the general family of
  :func:`rpd.theory.adversary.random_instance` restricted to NON-additive tables (feedback
  inside the window, random and time-varying tables, S up to 8): outside A8."""
  from rpd.theory import adversary
  return adversary.maximize(lambda inst: ratio(inst, "lemma"), n_random, n_climb, seed,
                            accept=lambda i: not is_additive(i.T))


def evaluate_store() -> dict:
  """``{target: max over every stored additive instance of Dg / bound}`` (the lemma's must
  be ``<= 1``; a mutant's above 1 means the search refuted it), and ``nonadditive``: the
  lemma's ratio on the stored best non-additive instance (outside A8)."""
  store = load_store()
  insts = [i for t, i in store.items() if t in TARGETS]
  out = {t: max(ratio(i, t) for i in insts) for t in TARGETS}
  out["nonadditive"] = ratio(store["nonadditive"], "lemma")
  return out


def _main(argv) -> None:
  if "--search" in argv:
    from rpd.theory import adversary
    found = {t: search(t, seed=k) for k, t in enumerate(TARGETS)}
    found["nonadditive"] = nonadditive_search()
    adversary.report_searches(found, STORE if "--write" in argv else None)
    return
  d = derive()
  print("PipeDream table additive for every S:", pipedream_table_is_additive())
  print("condition >= 0: 1 - L gamma - q gamma^2, q =", d["quadratic_coef_factored"])
  print("a* =", d["a_star"], "  q* =", d["quadratic_coef_star"])
  print("gamma_max =", d["gamma_max"])
  print("bound =", d["bound"])
  for r in threshold_table():
    print(f"S={r['S']:2d} tau={r['tau']:4d} gamma_max={r['gamma_max']:.5g} "
          f"S*gamma_max={r['S_gamma_max']:.4f} exact={r['exact']:.5g} ratio={r['ratio']:.3f}")


def schedule_tables_additive(P_values=(2, 3, 4, 6, 8)) -> dict:
  """``{schedule: all steady-state tables additive}`` for the asynchronous schedules of
  :mod:`rpd.schedules` (tables from the event simulation, not from the closed form)."""
  from rpd.schedules import get_schedule
  names = ("pipedream", "pipedream-2bw", "pipemare")
  return {n: all(is_additive(get_schedule(n).delay_table(P)) for P in P_values) for n in names}


def markdown_lines() -> list[str]:
  """THEOREM.md: the order-1/(L S) theorem for every quadratic with an additive table."""
  d = derive()
  st_ = mismatch_steps()
  M, R = parts()
  allrows = threshold_table()
  rows = [r for r in allrows if r["S"] in (2, 3, 4, 8, 16, 32)]
  lo, hi = min(r["ratio"] for r in allrows), max(r["ratio"] for r in allrows)
  r1 = threshold_table((2, 3), "rank1")
  ev = evaluate_store()
  sched = schedule_tables_additive()
  fmt = lambda xs: ", ".join(f"{x:.4g}" for x in xs)
  a1 = d["quadratic_coef_factored"].subs(a, 1)
  suff = sufficient_step_size()
  stale1 = sp.factor(d["stale_term"].subs(a, 1))
  return [
      "## Order 1/(L S) for every quadratic: additive delay tables", "",
      "**Status: proved** (sympy certificate, `theory/coupled.py`, the same machinery as "
      "above) under A1-A6 and", "",
      f"- **{ASSUMPTION_A8.label}** {ASSUMPTION_A8.statement}.", "",
      "No bound on the coupling between blocks is needed: the limit is of order `1/(L S)` for "
      "*every* `H` with `||H|| <= L`, which closes the coupled case left open by the A7 "
      "theorem above for the tables that PipeDream actually produces. "
      f"PipeDream's table is additive for every `S` (`pipedream_table_is_additive`: "
      f"{pipedream_table_is_additive()}, proved on the eight parity polynomials of "
      "`theory/delay.py`: `tau[i][j] - tau[i][1] - tau[1][j] + tau[1][1] = 0` identically). "
      "The steady-state tables of the event simulation (`rpd.schedules`, P = 2, 3, 4, 6, 8) "
      "are additive too: " + ", ".join(f"{n} {v}" for n, v in sched.items()) + ". The "
      "reason is weight stashing: a microbatch reads block `j` once, after `R_j` updates, "
      "and block `i` applies its update for it at iteration `U_i`, so `tau_ij = U_i - R_j` "
      "(both shift by `S` per microbatch).", "",
      "**Proof, step by step** (`mismatch_steps`; `u_j^l` = `grad_j f` at the point block "
      "`j` reads at step `l`, `F_l`-measurable; `i_l` the block updated at `l`):",
      "1. *Split* (conditional mean plus martingale). The increment of block `j` at step `l` "
      "is `-gamma 1[i_l = j] (u_j^l + e_j^l) = -gamma (u_j^l / S + xi_j^l)` with `E[xi^l | "
      "F_l] = 0` (A3, A4). Row `i` of `-H (x^k - x_hat^(i)) / gamma` is `mean_i + mart_i`, "
      "`mean_i = (1/S) sum_j H_ij sum_{l <= tau_ij} u_j^{k-l}`, `mart_i = sum_j H_ij "
      "sum_{l <= tau_ij} xi_j^{k-l}`. Young: `||mean + mart||^2 <= (1 + a) ||mean||^2 + "
      "(1 + 1/a) ||mart||^2`.",
      "2. *Mean part: rectangles.* Write `tau_ij = alpha_i + beta_j` and `l = beta_j + m`: "
      "`1 <= l <= tau_ij` iff `1 - beta_j <= m <= alpha_i`, a column condition times a row "
      "condition. So the vector `(mean_i)_i = (1/S) sum_m P_m H Q_m z^m` with `z^m_j = "
      "u_j^{k - beta_j - m}` and `P_m, Q_m` coordinate projections (rows with `alpha_i >= m`; "
      "columns with `1 <= beta_j + m <= k`). There are `max alpha + max beta = tau` values of "
      "`m`; Cauchy-Schwarz over them, `||P_m H Q_m|| <= ||H|| <= L`, and `sum_m ||Q_m "
      "z^m||^2 <= U = sum_{l <= tau} sum_j ||u_j^{k-l}||^2` (distinct `m` are distinct lags "
      f"of each block): `E sum_i ||mean_i||^2 <= {st_['mean']}`.",
      "3. *Martingale part: orthogonal increments.* `(mart_i)_i = sum_{l <= tau} (H o P^l) "
      "xi^{k-l}` with the deterministic pattern `P^l_ij = [l <= tau_ij]` (A6): cross terms "
      "vanish. A conditional variance is at most the conditional second moment, and the "
      "single-block increment meets one column block of `H o P^l`, a row selection of a "
      "column block of `H` (norm `<= L`): `E||(H o P^l) xi^{k-l}||^2 <= L^2 (G_{k-l} + "
      f"sigma2 / S)`. Summed: `E sum_i ||mart_i||^2 <= {st_['martingale']}` with "
      "`U / S` standing for the window sum of `G`. No additivity is used here.",
      "4. *Average over the uniform `i_k`*: `Dg = (gamma^2 / S) sum_i E||mean_i + mart_i||^2`, "
      "`E U = S W_k`: **`Dg <= " + str(mismatch_lemma()) + "`** (fact `mismatch`, "
      "`mismatch_lemma`), for every `a > 0`; `H` may be indefinite and the tables "
      "time-varying (each additive, fixed in advance).",
      "5. *Certificate*: stage 1 without `smoothness` keeps `Dg`; stage 2 sums, uses the "
      "mismatch lemma, the window count and `f >= f*`. The coefficient left on `sum_k G_k` "
      f"must be `>= 0`: `1 - L gamma - q gamma^2 >= 0`, `q = {d['quadratic_coef_factored']}`; "
      f"sympy's minimizer `a* = {d['a_star']}` gives `q* = {d['quadratic_coef_star']}` and", "",
      f"    gamma_max = {d['gamma_max_in_q']}  with q = q*", "",
      "   With `tau ~ S^2` this is `gamma_max ~ 1/(L S)` for every `H`. **Explicit "
      "constant** (`sufficient_step_size`, sympy): `gamma <= 1/(2 L S)` satisfies the "
      "condition for every `S >= 2` with PipeDream's table, because `tau_max(S) <= S^2` "
      f"({suff['tau_max_le_S2']}), `q*` increases with `tau` ({suff['q_increasing_in_tau']}), "
      f"and at `tau = S^2` the condition reads `{suff['g']} >= 0`, increasing in `S` "
      f"({suff['g_increasing']}) and {suff['g_at_2']:.4f} at `S = 2`.",
      f"6. *Rate*: `(1/K) sum_k E||grad f(x^k)||^2 <= {d['bound']}` (any `a > 0` with the "
      "condition); with `K = S K_mb` the first term is `2 Delta / (gamma K_mb)`. At `a = 1` "
      f"the condition's `q` is `{a1}` (still order `1/(L S)`) and the stale term is "
      f"`{stale1}`, of order `gamma^2 L^2 sigma2 S` with `tau ~ S^2`.", "",
      "**Checks** (`tests/test_coupled.py`). Proved limit (any `H`, `||H|| <= 1`) vs the exact "
      "mean-square threshold of rpd on the isotropic quadratic, S = "
      f"{[r['S'] for r in rows]}: `gamma_max` {fmt([r['gamma_max'] for r in rows])}; `S "
      f"gamma_max` {fmt([r['S_gamma_max'] for r in rows])}; exact "
      f"{fmt([r['exact'] for r in rows])}; ratio exact/proved {fmt([r['ratio'] for r in rows])}"
      f" (every S = 2..32: between {lo:.3f} and {hi:.3f}, within the goal of 4). Rank one "
      "`H = (L/S) 11'` (strongly coupled): " + "; ".join(
          f"S = {r['S']}: proved {r['gamma_max']:.4g}, exact {r['exact']:.4g}, ratio "
          f"{r['ratio']:.2f}" for r in r1) + " (the A7 theorem gave 0.294 and 0.215 there). "
      "The mismatch lemma against exact moments (`lemma_exact.stale_moments`, key `Dg`) on an "
      "adversarial family of additive tables (PipeDream's, random `alpha_i + beta_j`, "
      "time-varying; `H` dense, rank one or one negative eigenvalue; noise on one block or "
      "all; S = 1..4, d up to 2S; `python -m rpd.theory.coupled --search --write`), at its "
      "strongest `min_a` form `(sqrt(M) + sqrt(R))^2` with `M = " + str(M) + "`, `R = "
      + str(R) + "`: max `Dg / bound` = " + f"{ev['lemma']:.6f} (attained: noise-only "
      "instances make the martingale part exact). Mutants on their stored instances: mean "
      f"part halved {ev['half_mean']:.4f}, martingale part halved {ev['half_martingale']:.4f}, "
      f"`tau -> tau/2` in the mean part {ev['tau_half_mean']:.4f}: all three **refuted** "
      "(the mean-part refutations are at `S = 1`, noiseless; at `S >= 2` the search did not "
      "refute a halved mean part). Non-additive tables (the general adversarial "
      "family of `theory/adversary.py`, S <= 8, outside A8): the same search found no "
      f"counterexample to the lemma (max `Dg / bound` = {ev['nonadditive']:.4f}); additivity "
      "is what the proof uses, not shown necessary.", "",
      "**Not covered by this section.** (i) The cyclic order of PipeDream itself (`i_k = k mod S`): the "
      "certificate averages over a uniform `i_k`; a cycle-based proof would group the `S` "
      "updates of one cycle into the conditional mean (done below: A9). (ii) Non-quadratic "
      "`f`: step 2 needs one matrix `H` for all rows `i` (the integrated Hessian along "
      "`x_hat^(i) -> x` depends on `i`); anchoring it at `hess f(x^{k-tau})` works under a "
      "Hessian-Lipschitz constant and an almost-sure gradient bound (A10, below).", ""]


if __name__ == "__main__":
  _main(__import__("sys").argv[1:])
