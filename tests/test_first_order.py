"""The order-1/(L S) step-size limit (``rpd.theory.first_order``): hand derivation, exact
moments, exact thresholds, adversarial instances.

References share nothing with the code under test: the hand form of the condition is typed
from the written proof (THEOREM.md), the exact thresholds come from
:mod:`rpd.theory.stability` (scalar chains), the left sides from exact moment recursions.
"""
import numpy as np
import pytest
import sympy as sp

from rpd.theory import first_order as fo
from rpd.theory import lemma_exact as le
from rpd.theory import stability as st
from rpd.theory.theorem import VARIANTS, Delta, K, L, S, gamma, sigma2, tau


def test_step_size_condition_is_the_hand_derivation():
  """q* = tau (sqrt(tau) + sqrt(S-1))^2 (L_d + sqrt(S) L_c)^2 / S^2 and the rate, by hand."""
  d = fo.derive()
  hand_q = tau * (sp.sqrt(tau) + sp.sqrt(S - 1)) ** 2 * (fo.Ld + sp.sqrt(S) * fo.Lc) ** 2 / S ** 2
  for vals in ({S: 2, tau: 3, fo.Ld: 1, fo.Lc: 0}, {S: 7, tau: 45, fo.Ld: 0.3, fo.Lc: 0.8},
               {S: 32, tau: 1008, fo.Ld: 1, fo.Lc: 0.1}):
    assert float(d["quadratic_coef_star"].subs(vals)) == pytest.approx(float(hand_q.subs(vals)),
                                                                       rel=1e-12)
    q = float(hand_q.subs(vals))
    assert float(d["gamma_max"].subs({**vals, L: 1})) == pytest.approx(
        (-1 + np.sqrt(1 + 4 * q)) / (2 * q), rel=1e-12)
  hand_quad = (tau / S ** 2 * ((1 + fo.alpha) * tau + (1 + 1 / fo.alpha) * (S - 1))
               * ((1 + fo.beta) * fo.Ld ** 2 + (1 + 1 / fo.beta) * S * fo.Lc ** 2))
  assert sp.simplify(d["quadratic_coef"] - hand_quad) == 0
  hand_bound = (2 * S * Delta / (gamma * K) + L * gamma * sigma2 + gamma ** 2 * sigma2 * tau
                * (1 + 1 / fo.alpha) * ((1 + fo.beta) * fo.Ld ** 2 / S
                                        + (1 + 1 / fo.beta) * fo.Lc ** 2))
  assert sp.simplify(d["bound"] - hand_bound) == 0


def test_whole_lemma_at_alpha_1_is_the_block_variant():
  """The whole stale error = S x own-block lemma; at alpha = 1 it is variant ``block``."""
  assert sp.simplify(fo.whole_lemma().subs(fo.alpha, 1) - VARIANTS["block"].rhs) == 0


@pytest.mark.parametrize("S_", [2, 3, 4, 8, 16, 32])
def test_proved_limit_below_exact_threshold_isotropic(S_):
  """The proved limit lies below the exact mean-square threshold, within a factor 2.1."""
  (row,) = fo.isotropic_table([S_])
  assert row["gamma_max"] < row["exact"] < 2.1 * row["gamma_max"]


@pytest.mark.parametrize("S_", [2, 3])
def test_proved_limit_below_exact_threshold_rank_one(S_):
  """Coupled blocks (H = (L/S) 11', L_c > 0): still below the exact threshold."""
  H = st.hessian("rank1", S_)
  g = fo.gamma_max(S_, int(st.delay_table(S_).max()), *fo.block_constants(H, S_))
  assert g < st.thresholds("rpd", S_, "rank1")["mean_square_threshold"]


@pytest.mark.parametrize("problem,S_,sig", [("isotropic", 2, 0.0), ("isotropic", 3, 1.0),
                                            ("rank1", 2, 1.0)])
def test_theorem_bound_holds_at_gamma_max_exact(problem, S_, sig):
  """(1/K) sum_k E||grad f(x^k)||^2 (exact) <= the proved bound at gamma = gamma_max."""
  d = fo.derive()
  H, T = st.hessian(problem, S_), st.delay_table(S_)
  t = int(T.max())
  Lf, Ld_, Lc_ = fo.block_constants(H, S_)
  g = fo.gamma_max(S_, t, Lf, Ld_, Lc_)
  x0, K_ = np.ones(S_), 120
  m = le.stale_moments(H, None, sig ** 2 * np.eye(S_) / S_, T, g, x0, K_)
  vals = {S: S_, tau: t, gamma: g, L: Lf, fo.Ld: Ld_, fo.Lc: Lc_, sigma2: sig ** 2,
          Delta: 0.5 * x0 @ H @ x0, K: K_, fo.alpha: np.sqrt((S_ - 1) / t),
          fo.beta: max(np.sqrt(S_) * Lc_ / Ld_, 1e-9)}
  assert m["N"][:K_].mean() <= float(d["bound"].subs(vals))


def test_own_block_lemma_and_coupled_fact_on_adversarial_instances():
  """Own-block lemma (alpha = 1 and alpha*) and the fact ``coupled`` (A7 + Young) hold on
  every stored adversarial instance (theory/adversarial.json, first_order_adversarial.json)."""
  from rpd.theory import adversary
  insts = [i for e in adversary.load_store().values() for i in e.values()]
  insts += list(fo.load_store().values()) + [adversary.issue_instance()]
  worst = 0.0
  for inst in insts:
    for target in ("lemma", "lemma_alpha_star"):
      r = fo.own_ratio(inst, fo.own_target_fn(target))
      assert r <= 1 + 1e-9, (target, inst.label)
      worst = max(worst, r)
    m = le.stale_moments(inst.H, inst.c, inst.Sigma, inst.T, inst.gamma, inst.x0, inst.K)
    _, Ld_, Lc_ = fo.block_constants(inst.H, inst.H.shape[0])
    b = np.sqrt(inst.H.shape[0]) * Lc_ / Ld_ if Lc_ > 0 and Ld_ > 0 else 0.0
    rhs = Ld_ ** 2 * m["D_own"] if b == 0 else \
        (1 + b) * Ld_ ** 2 * m["D_own"] + (1 + 1 / b) * Lc_ ** 2 * m["D"]
    assert np.all(m["Dg"] <= rhs * (1 + 1e-9) + 1e-12), inst.label
  assert worst > 0.5  # the checks reach the bound (not vacuous)


def test_halved_martingale_constant_is_refuted():
  """The stored instance refutes the own-block lemma with its martingale part halved."""
  r = fo.evaluate_store()
  assert r["half_martingale"] > 1.0
  assert r["lemma"] <= 1.0 and r["lemma_alpha_star"] <= 1.0


def test_theorem_bound_holds_on_psd_adversarial_instances():
  """Stored adversarial instances (S >= 2) made PSD (H -> |H|), their own delay tables
  (static or time-varying), gamma = gamma_max(S, tau, L, L_d, L_c): bound >= exact mean N."""
  from rpd.theory import adversary
  d = fo.derive()
  insts = [i for e in adversary.load_store().values() for i in e.values()]
  insts += list(fo.load_store().values())
  n = 0
  for inst in insts:
    S_ = inst.H.shape[0]
    w, V = np.linalg.eigh(inst.H)
    if S_ < 2 or np.abs(w).max() < 1e-9:
      continue
    H = (V * np.abs(w)) @ V.T
    Lf, Ld_, Lc_ = fo.block_constants(H, S_)
    T, K_ = np.asarray(inst.T), 100
    if T.ndim == 3 and T.shape[0] < K_ + 1:
      T = np.concatenate([T, np.broadcast_to(T[-1], (K_ + 1 - T.shape[0],) + T.shape[1:])])
    t = int(T.max())
    g = fo.gamma_max(S_, t, Lf, Ld_, Lc_)
    x0 = inst.x0 if np.abs(inst.x0).sum() else np.ones(S_)
    c = H @ np.linalg.pinv(H) @ inst.c  # in the range of H: f bounded below
    m = le.stale_moments(H, c, inst.Sigma, T, g, x0, K_)
    f = lambda x: 0.5 * x @ H @ x - c @ x
    vals = {S: S_, tau: t, gamma: g, L: Lf, fo.Ld: Ld_, fo.Lc: Lc_, sigma2: m["sigma2"],
            Delta: f(x0) - f(np.linalg.pinv(H) @ c), K: K_,
            fo.alpha: np.sqrt((S_ - 1) / t), fo.beta: max(np.sqrt(S_) * Lc_ / Ld_, 1e-9)}
    assert m["N"][:K_].mean() <= float(d["bound"].subs(vals)), inst.label
    n += 1
  assert n >= 4
