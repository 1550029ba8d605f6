"""Which mitigation tames the staleness? Critical step size and stale-read error against S.

For every rule of the config (the bases ``pipedream`` and ``rpd`` and the mitigations of the
zoo on them: ``adapt``, ``pipemare``, ``predict``, ``2bw``) and every problem: the largest
stable step size ``gamma_crit(S)`` by :mod:`rpd.experiments.critical_gamma`'s vectorised
bisection (a round depends on the config and the previous rounds only; reruns skip finished
work), its exponent ``gamma_crit ~ S^p`` fitted on log-log axes, and the stale-read error
``||x_hat^k - x^k||^2`` (mean of the records at ``K / 2`` and ``K``) at the fixed step
``gamma_lo``, read from the bisection's first grid (no extra runs). A rule stable up to
``gamma_hi`` has its estimate censored at the largest stable gamma (said so in the finding).
The finding of each mitigation is computed from these numbers against its base rule.
"""
from __future__ import annotations

import numpy as np

from rpd.experiments import critical_gamma as cg
from rpd.experiments.common import Progress, ResultsStore, loglog_slope, save_figure
from rpd.experiments.runner import run_engine_batch

FIGURE_DOC = ("Mitigations against S: the largest stable step size (bisection, left) and the "
              "stale-read error at a fixed step size (right), on a quadratic and a full-batch "
              "logistic regression; every mitigation next to its base rule.")

BASE_OF = {"adapt:pipedream": "pipedream", "adapt:rpd": "rpd", "pipemare:pipedream": "pipedream",
           "predict:pipedream": "pipedream", "2bw": "pipedream"}


def _spec(prob: dict) -> dict:
  return {k: v for k, v in prob.items() if k != "label"}


def bracket(cfg: dict, store: ResultsStore, prob: dict, rule: str, S: int, rounds: int):
  """``(lo, hi)`` from the runs of rounds ``< rounds`` only (as critical_gamma's bracket)."""
  rows = store.select(experiment=cfg["name"], problem=_spec(prob), rule=rule, S=S,
                      K=cg.K_for(cfg, S))
  res = sorted((r["config"]["gamma"], cg._stable(r["result"])) for r in rows
               if r["config"]["round"] < rounds)
  unstable = [g for g, ok in res if not ok]
  hi = min(unstable) if unstable else None
  below = [g for g, ok in res if ok and (hi is None or g < hi)]
  return (max(below) if below else None), hi


def run(cfg: dict, store: ResultsStore, progress: bool = True) -> int:
  """Bisection per (problem, rule, S): round ``r``'s grid depends on the config and on the
  runs of rounds ``< r`` only, so a rerun asks for exactly the same configurations."""
  bar = Progress(len(cfg["problems"]) * len(cfg["rules"]) * len(cfg["stages"]) * cfg["rounds"],
                 cfg["name"], progress)
  ran = 0
  for prob in cfg["problems"]:
    for rule in cfg["rules"]:
      for S in cfg["stages"]:
        K = cg.K_for(cfg, S)
        for rnd in range(cfg["rounds"]):
          gs = cg.grids(cfg, *bracket(cfg, store, prob, rule, S, rnd), rnd)
          if gs is not None:
            ran += run_engine_batch(store, {"experiment": cfg["name"], "round": rnd},
                                    _spec(prob), rule, S, gs, np.full(len(gs), cfg["seed"]),
                                    K, K // 2)
          bar.update()
  bar.close()
  return ran


def _stale_err(cfg, store, prob, rule, S) -> float:
  """Mean of ``||x_hat - x||^2`` at the records ``K / 2`` and ``K`` of the run at ``gamma_lo``."""
  rows = store.select(experiment=cfg["name"], round=0, problem=_spec(prob), rule=rule, S=S,
                      K=cg.K_for(cfg, S))
  rows = [r for r in rows if r["config"]["gamma"] == min(x["config"]["gamma"] for x in rows)]
  if not rows or rows[0]["result"]["diverged"]:
    return float("nan")
  return float(np.mean(np.asarray(rows[0]["result"]["stale_x_err"], float)[1:]))


def _crit(cfg, store, prob, rule):
  S = np.array(cfg["stages"])
  br = [bracket(cfg, store, prob, rule, int(s), cfg["rounds"]) for s in S]
  # stable up to gamma_hi: the estimate is censored at the largest stable gamma
  est = np.array([np.nan if lo is None else lo if hi is None else np.sqrt(lo * hi)
                  for lo, hi in br])
  ok = np.isfinite(est)
  p = loglog_slope(S[ok], est[ok])[0] if ok.sum() >= 2 else float("nan")
  return est, p


def _crit_censored(cfg, store, prob, rule) -> bool:
  """Whether the largest S of ``rule`` never became unstable (estimate = a lower bound)."""
  lo, hi = bracket(cfg, store, prob, rule, int(cfg["stages"][-1]), cfg["rounds"])
  return lo is not None and hi is None


def plot(cfg: dict, store: ResultsStore, out_dir: str) -> dict:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  S = np.array(cfg["stages"])
  probs = cfg["problems"]
  fig, axes = plt.subplots(len(probs), 2, figsize=(10, 3.8 * len(probs)), squeeze=False)
  table, sentences = [], []
  for row, prob in zip(axes, probs):
    crit, err = {}, {}
    for n, rule in enumerate(cfg["rules"]):
      est, p = _crit(cfg, store, prob, rule)
      e = np.array([_stale_err(cfg, store, prob, rule, int(s)) for s in S])
      crit[rule], err[rule] = (est, p), e
      ls = "-" if rule in ("pipedream", "rpd") else "--"
      row[0].plot(S, est, "o" + ls, color=f"C{n}", label=f"{rule}: exponent {p:.2f}")
      row[1].plot(S, e, "o" + ls, color=f"C{n}", label=rule)
      for s, g, x in zip(S, est, e):
        table.append(dict(experiment="mitigations", problem=prob["name"], rule=rule, S=int(s),
                          gamma_crit=g, exponent=p, stale_x_err=x, err_gamma=cfg["gamma_lo"]))
    for ax, ylab in zip(row, ("largest stable step size", r"stale-read error $\|\hat x - x\|^2$")):
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_xlabel("stages S")
      ax.set_ylabel(ylab)
      ax.set_title(prob["label"], fontsize=9)
      ax.legend(fontsize=7)
    for rule, base in BASE_OF.items():
      if rule not in crit or base not in crit:
        continue
      (g, p), (gb, pb) = crit[rule], crit[base]
      r_g = g[-1] / gb[-1]
      r_e = err[rule][-1] / err[base][-1]
      cens = " (at least: stable up to the largest gamma tried)" if (
          _crit_censored(cfg, store, prob, rule)) else ""
      if not np.isfinite(r_g):
        verdict = "its largest stable step size could not be bracketed"
      else:
        verdict = ("it raises the largest stable step size" if r_g > 1.05 else
                   "it does not change the largest stable step size" if r_g >= 0.95 else
                   "it lowers the largest stable step size (it does not help)")
      sentences.append(
          f"{rule} vs {base} ({prob['name']}): at S={S[-1]} gamma_crit is {r_g:.2f}x the base's"
          f"{cens} (exponent {p:.2f} vs {pb:.2f}) and the stale-read error at "
          f"gamma={cfg['gamma_lo']} is {r_e:.2f}x, so {verdict}"
          + (" (in nominal gamma: the update itself uses the delay-scaled step)."
             if rule.startswith("adapt") else "."))
  fig.tight_layout()
  files = save_figure(fig, out_dir, cfg["name"])
  return {"figures": files, "finding": " ".join(sentences), "table": table}
