"""Measured runs against the RPD theorem and its stale-read lemma (in the manner of PEPit).

Problem: a quadratic ``f = 1/2 x'Ax - b'x`` (``L = lambda_max(A)`` exact, additive noise
``sigma xi`` so ``sigma2 = sigma^2 d`` exactly and per block ``sigma^2 d_i``, ``Delta = f(0) -
f*`` exact) and logistic regression on synthetic data (``L = ||X||_2^2 / (4n)``; minibatch
of ``b`` rows drawn with replacement, so per block ``sup_x E||g_i - grad_i f||^2 <=
||X_{:, i}||_F^2 / (b n)`` and ``sigma2 = ||X||_F^2 / (b n)``; ``f* >= 0``, so ``Delta <=
f(0)`` is used: an upper bound, which keeps the theorem valid).

Algorithm: the engine (:mod:`rpd.engine`) with rule ``rpd`` (uniform blocks, PipeDream
delay table: inside the theorem's assumptions) and ``pipedream`` (cyclic block order, one
gradient per microbatch shared by ``S`` updates: *outside* assumptions A3/A4, reported for
comparison), ``tau = rule.tau_max = tau_max(S)``.

Theoretical guarantee: :func:`rpd.theory.theorem.derive` (variants ``cs`` and ``martingale``),
and the averaged stale-read lemma :func:`rpd.theory.theorem.lemma_bound`, whose unmeasured
``mean_G = (1/K) sum_l E||grad_{i_l} f(x_hat^l)||^2`` is bounded by the measured
``2 (avg ||grad f(x^k)||^2 + avg ||grad f(x^k) - grad f(x_hat^k)||^2)`` (Young).

Returns: one row per configuration with what was measured (means over seeds of the engine's
exact running averages ``avg_grad_norm_sq``, ``avg_stale_x_err``) and what the theory says
(the bounds), and ``ratio = bound / measured`` (a ratio below 1 is a violation).

Every variant of :data:`rpd.theory.theorem.VARIANTS` is checked at fractions of its *own*
``gamma_max`` (a variant whose limit is larger is thereby tested where only it applies); on
the quadratic also the any-H theorem A8 (:mod:`rpd.theory.coupled`, bound at ``a*``: the rpd
rule's table is PipeDream's, additive), whose limit is the largest.
``rpd theory check`` exits 1 when a row inside the assumptions violates a bound or a lemma.

Example (``rpd theory check``)::

  problem   rule      S  tau  gamma/gmax  measured  bound_cs  ratio ...
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import sympy as sp

from rpd.theory import theorem
from rpd.theory.theorem import Delta, K, L, S, gamma, sigma2, tau

GAMMA_FRACTIONS = (0.1, 0.35, 0.7, 1.0)  # of gamma_max of each variant's condition


@dataclasses.dataclass(frozen=True)
class Config:
  """A set of measured configurations."""
  problems: tuple = ("quadratic", "logistic")
  rules: tuple = ("rpd", "pipedream")
  S_values: tuple = (2, 4, 8, 16)
  fractions: tuple = GAMMA_FRACTIONS
  K: int = 4096
  seeds: int = 8
  d: int = 32


FULL = Config()
QUICK = Config(S_values=(2, 4), fractions=(0.35, 1.0), K=512, seeds=4, d=16)
"""The default of ``rpd theory check`` (``--full`` runs :data:`FULL`)."""
VARIANT_NAMES = tuple(theorem.VARIANTS)
BOUNDS = VARIANT_NAMES + ("A8",)
"""Theorems whose bound is checked: every variant, and the any-H theorem for quadratics with
an additive table (:mod:`rpd.theory.coupled`; n/a on logistic regression)."""


def make_problem(name: str, S_: int, d: int):
  """The two test problems; returns ``(problem, sigma2, Delta, note)``."""
  import jax.numpy as jnp

  from rpd.problems import get_problem
  if name == "quadratic":
    pb = get_problem("quadratic", S_, d=d, L=1.0, mu=0.01, noise=0.1, seed=0)
    delta = float(pb.full_loss(pb.init(None))) - pb.f_star
    return pb, float(pb.sigma2), delta, "L, sigma2, Delta exact"
  if name == "logistic":
    pb = get_problem("logistic", S_, n=256, d=d, batch=8, lam=0.0, seed=0)
    X = np.asarray(pb.X)
    s2 = float(np.sum(X ** 2) / (pb.batch * pb.n)) if pb.batch < pb.n else 0.0
    f0 = float(pb.full_loss(jnp.zeros((pb.S, pb.D), pb.X.dtype)))
    return pb, s2, f0, "L = ||X||^2/(4n), sigma2 = ||X||_F^2/(b n), Delta <= f(0) (f* >= 0)"
  raise ValueError(f"unknown problem {name!r}")


def _lambdified():
  out = {}
  for v in VARIANT_NAMES:
    th = theorem.derive(v)
    out[v] = (sp.lambdify((gamma, K, S, L, tau, sigma2, Delta), th["bound"], "math"),
              sp.lambdify((L, tau), th["gamma_max"], "math"))
  return out


def gamma_max(variant: str, L_: float, tau_: int, S_: int = 1) -> float:
  """The exact largest step size of the variant's condition (``1/L`` when ``tau = 0``)."""
  if tau_ == 0:
    return 1.0 / L_
  if variant == "A8":
    from rpd.theory import coupled
    return coupled.gamma_max(S_, tau_, L_)
  return float(theorem.derive(variant)["gamma_max"].subs({L: L_, tau: tau_, S: S_}))


def theory_side(variant: str, *, gamma_: float, K_: int, S_: int, L_: float, tau_: int,
                sigma2_: float, Delta_: float) -> float | None:
  """The theorem's bound, or ``None`` when ``gamma_`` violates the step-size condition."""
  if gamma_ > gamma_max(variant, L_, tau_, S_) * (1 + 1e-12):
    return None
  if variant == "A8":  # at a* = sqrt(S / tau), where gamma_max is taken
    from rpd.theory import coupled
    return float(coupled.derive()["bound"].subs({
        coupled.a: math.sqrt(S_ / max(tau_, 1)), gamma: gamma_, K: K_, S: S_, L: L_,
        tau: tau_, sigma2: sigma2_, Delta: Delta_}))
  th = theorem.derive(variant)
  return float(th["bound"].subs({gamma: gamma_, K: K_, S: S_, L: L_, tau: tau_,
                                 sigma2: sigma2_, Delta: Delta_}))


def measure(problem, rule, gammas, n_seeds: int, K_: int) -> dict:
  """Run the engine for every ``gamma`` x seed; means and standard errors over seeds."""
  from rpd.engine import sweep
  g = np.repeat(np.asarray(gammas, float), n_seeds)
  seeds = np.tile(np.arange(n_seeds), len(gammas))
  res = sweep(problem, rule, gammas=g, seeds=seeds, K=K_, track_average=True)
  out = {"diverged": np.asarray(res.diverged).reshape(len(gammas), n_seeds).sum(1)}
  for name in ("avg_grad_norm_sq", "avg_stale_x_err", "avg_stale_grad_err"):
    v = np.asarray(res.metrics[name])[:, -1].reshape(len(gammas), n_seeds)
    out[name] = v.mean(1)
    out[name + "_sem"] = v.std(1, ddof=1) / math.sqrt(n_seeds) if n_seeds > 1 else 0 * v[:, 0]
  return out


def check_configuration(problem_name: str, rule_name: str, S_: int, cfg: Config = QUICK):
  """Measured vs theory for one ``(problem, rule, S)`` and every step-size fraction.

  Returns:
    list of row dicts (see the module docstring).
  """
  from rpd.rules import get_rule
  pb, s2, dlt, note = make_problem(problem_name, S_, cfg.d)
  rule = get_rule(rule_name, S_)
  t = int(rule.tau_max)
  bounds = BOUNDS if problem_name == "quadratic" else VARIANT_NAMES
  runs = [(v, f, f * gamma_max(v, pb.L, t, S_)) for v in bounds for f in cfg.fractions]
  m = measure(pb, rule, [g for _, _, g in runs], cfg.seeds, cfg.K)
  rows = []
  for r, (gv, frac, g) in enumerate(runs):
    lhs, stale = float(m["avg_grad_norm_sq"][r]), float(m["avg_stale_x_err"][r])
    mean_G = 2 * (lhs + float(m["avg_stale_grad_err"][r]))
    row = {
        "problem": problem_name, "rule": rule_name, "S": S_, "tau": t, "K": cfg.K,
        "seeds": cfg.seeds, "gamma": g, "gamma_of": gv, "gamma_frac": frac, "L": pb.L,
        "sigma2": s2, "Delta": dlt, "constants": note,
        "in_assumptions": rule_name == "rpd",
        "diverged": int(m["diverged"][r]),
        "measured": lhs, "measured_sem": float(m["avg_grad_norm_sq_sem"][r]),
        "measured_stale": stale, "measured_stale_sem": float(m["avg_stale_x_err_sem"][r]),
    }
    for v in BOUNDS:
      b = (theory_side(v, gamma_=g, K_=cfg.K, S_=S_, L_=pb.L, tau_=t, sigma2_=s2, Delta_=dlt)
           if v in bounds else None)
      row[f"bound_{v}"] = b
      row[f"ratio_{v}"] = None if b is None else b / lhs
    for v in VARIANT_NAMES:
      lem = theorem.lemma_bound(v, mean_G, g, t, s2, S_)
      row[f"lemma_{v}"] = lem
      row[f"lemma_ratio_{v}"] = lem / stale if stale > 0 else float("inf")
    row["holds"] = row["diverged"] == 0 and all(
        row[f"ratio_{v}"] is None or row[f"ratio_{v}"] >= 1 for v in BOUNDS)
    row["lemma_holds"] = all(row[f"lemma_ratio_{v}"] >= 1 for v in VARIANT_NAMES)
    rows.append(row)
  return rows


def stale_scaling(S_values=(2, 4, 8, 16), gamma_: float = 1e-3, K_: int = 2048,
                  seeds: int = 4, d: int = 32) -> dict:
  """Measured ``avg ||x^k - x_hat^k||^2`` at a fixed ``gamma`` against ``S`` (quadratic, rpd).

  Returns the measured values, the fitted exponent of ``S`` (least squares on logs), and
  the exponents of the two lemmas' noise parts ``b sigma2 / S`` (cs: ``tau^2/S ~ S^3``;
  martingale: ``2 tau / S ~ S``), which dominate on a noisy quadratic.
  """
  from rpd.rules import get_rule
  vals = []
  for s_ in S_values:
    pb, s2, _, _ = make_problem("quadratic", s_, d)
    m = measure(pb, get_rule("rpd", s_), [gamma_], seeds, K_)
    vals.append(float(m["avg_stale_x_err"][0]))
  slope = float(np.polyfit(np.log(S_values), np.log(vals), 1)[0])
  from rpd.theory import delay
  lem = {}
  for v in VARIANT_NAMES:
    b = theorem.VARIANTS[v].b / S
    e = [float(b.subs({tau: delay.tau_max(s_), S: s_})) for s_ in S_values]
    lem[v] = float(np.polyfit(np.log(S_values), np.log(e), 1)[0])
  return {"S": list(S_values), "gamma": gamma_, "K": K_, "measured_stale": vals,
          "fitted_exponent": slope, "lemma_noise_exponent": lem}


def run_all(full: bool = False, seeds: int | None = None, progress: bool = False) -> list[dict]:
  """Every configuration of :data:`QUICK` (default) or :data:`FULL` (a tqdm bar on stderr if
  ``progress``; tqdm writes plain lines when stderr is not a terminal)."""
  from tqdm import tqdm
  cfg = FULL if full else QUICK
  if seeds is not None:
    cfg = dataclasses.replace(cfg, seeds=seeds)
  todo = [(p, r, s_) for p in cfg.problems for r in cfg.rules for s_ in cfg.S_values]
  rows = []
  for p, r, s_ in tqdm(todo, desc="rpd theory check", unit="config", disable=not progress):
    rows += check_configuration(p, r, s_, cfg)
  return rows


def violations(rows: list[dict]) -> list[str]:
  """Rows inside the assumptions where a bound or a lemma fails (what makes the check exit 1)."""
  return [f"{r['problem']}/{r['rule']}/S={r['S']}/gamma={r['gamma_frac']}*gamma_max("
          f"{r['gamma_of']})" for r in rows
          if r["in_assumptions"] and not (r["holds"] and r["lemma_holds"])]


def summarize(rows: list[dict]) -> dict:
  """Ranges of the tightness ratios, and violations, split by in/out of the assumptions."""
  out = {}
  for inside in (True, False):
    sel = [r for r in rows if r["in_assumptions"] == inside]
    key = "rpd (theorem applies)" if inside else "pipedream (outside A3/A4)"
    entry = {"configurations": len(sel)}
    for name in [f"ratio_{v}" for v in BOUNDS] + [f"lemma_ratio_{v}" for v in VARIANT_NAMES]:
      vals = [r[name] for r in sel if r[name] is not None]
      entry[name] = [min(vals), max(vals)] if vals else None
    bad = [f"{r['problem']}/{r['rule']}/S={r['S']}/gamma={r['gamma_frac']}*gamma_max("
           f"{r['gamma_of']})" for r in sel if not (r["holds"] and r["lemma_holds"])]
    entry["violations" if inside else "exceeded (theorem does not apply)"] = bad
    out[key] = entry
  return out


def format_table(rows: list[dict]) -> str:
  """The check as a text table (one line per row; ``VIOLATED`` only inside the assumptions)."""
  fmt = lambda v: "n/a" if v is None else f"{v:.3g}"
  head = (f"{'problem':9s} {'rule':9s} {'S':>3} {'tau':>4} {'gamma':>16} {'measured':>9} "
          + " ".join(f"{'bnd_' + v[:4]:>9} {'ratio':>6}" for v in BOUNDS)
          + f" {'stale':>9} " + " ".join(f"{'lem_' + v[:4]:>9} {'ratio':>6}"
                                         for v in VARIANT_NAMES) + " ok")
  lines = [head]
  for r in rows:
    ok = r["holds"] and r["lemma_holds"]
    verdict = "yes" if ok else ("VIOLATED" if r["in_assumptions"] else "exceeded (outside)")
    g = f"{r['gamma_frac']:.2f}*{r['gamma_of'][:4]}={r['gamma']:.2g}"
    lines.append(
        f"{r['problem']:9s} {r['rule']:9s} {r['S']:>3} {r['tau']:>4} {g:>16} "
        f"{r['measured']:9.3g} "
        + " ".join(f"{fmt(r[f'bound_{v}']):>9} {fmt(r[f'ratio_{v}']):>6}" for v in BOUNDS)
        + f" {r['measured_stale']:9.3g} "
        + " ".join(f"{r[f'lemma_{v}']:9.3g} {r[f'lemma_ratio_{v}']:6.3g}" for v in VARIANT_NAMES)
        + f" {verdict}")
  lines.append("ratio = bound / measured (>= 1 required); n/a: gamma above that variant's "
               "step-size limit (A8: also on logistic regression, not a quadratic); gamma = "
               "fraction * gamma_max of the named variant; pipedream "
               "rows are outside assumptions A3/A4 (reported, never a failure).")
  for k, v in summarize(rows).items():
    lines.append(f"{k}: {v}")
  return "\n".join(lines)
