"""Tuned rate: the best step size of the grid for each (S, K), and the error it reaches.

The theorem in tuned-rate form bounds ``(1/K) sum_k E||grad f(x^k)||^2`` by terms of which the
stale-read one is ``Theta(S^4 / K)``. From the stage-sweep runs (records at ``K_r = r K /
n_records`` are runs of length ``K_r``, the engine being causal) this driver takes, for each
objective, rule, ``S`` and ``K_r``, the gamma of the grid minimising the mean over seeds of
``avg_grad_norm_sq`` at ``K_r``, and plots that minimum and the stale-read term
``avg_stale_grad_err`` at the same gamma against ``S^4 / K_r``, with the log-log slope of the
stale-read term fitted over all ``(S, K_r)`` points (if the term were ``c S^4 / K`` the points
would collapse on one line of slope 1).
"""
from __future__ import annotations

import numpy as np

from rpd.experiments import stage_sweep
from rpd.experiments.common import ResultsStore, loglog_slope, save_figure


FIGURE_DOC = ("For each S and K, the best step size of the grid: the mean squared gradient norm "
              "it reaches (circles) and the stale-read term at that step size (squares) "
              "against S^4/K, with the fitted log-log slope of the stale-read term.")

def run(cfg: dict, store: ResultsStore, progress: bool = True) -> int:
  """Runs the stage sweep's missing configurations (the tuned rate reuses its runs)."""
  return stage_sweep.run(cfg["sweep"], store, progress, label=f"{cfg['name']} (stage_sweep runs)")


def tuned_points(cfg: dict, store: ResultsStore, p: dict, rule: str) -> list[dict]:
  """Per ``(S, K_r)``: best gamma, its mean avg_grad_norm_sq and mean stale term."""
  sw = cfg["sweep"]
  spec = {k: v for k, v in p.items() if k != "label"}
  out = []
  for S in sw["stages"]:
    if S < cfg["min_S"]:
      continue
    per_gamma = {}
    for g in sw["gammas"]:
      rows = [r["result"] for r in store.select(experiment=sw["name"], problem=spec, rule=rule,
                                                S=S, K=sw["K"], gamma=float(g))]
      if not rows or any(r["diverged"] for r in rows):
        continue
      per_gamma[g] = (np.mean([r["avg_grad_norm_sq"] for r in rows], axis=0),
                      np.mean([r["avg_stale_grad_err"] for r in rows], axis=0),
                      np.asarray(rows[0]["k"]))
    if not per_gamma:
      continue
    k = next(iter(per_gamma.values()))[2]
    for r in range(cfg["min_record"], len(k)):
      g_best = min(per_gamma, key=lambda g: per_gamma[g][0][r])
      out.append(dict(S=S, K=int(k[r]), gamma=g_best, grad=float(per_gamma[g_best][0][r]),
                      stale=float(per_gamma[g_best][1][r]),
                      edge=g_best in (min(sw["gammas"]), max(sw["gammas"]))))
  return out


def plot(cfg: dict, store: ResultsStore, out_dir: str) -> dict:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  sw = cfg["sweep"]
  probs, rules = sw["problems"], sw["rules"]
  fig, axes = plt.subplots(len(rules), len(probs), figsize=(5.2 * len(probs), 4 * len(rules)),
                           squeeze=False)
  table, findings = [], []
  for a, rule in enumerate(rules):
    for b, p in enumerate(probs):
      ax = axes[a][b]
      pts = tuned_points(cfg, store, p, rule)
      if not pts:
        continue
      x = np.array([q["S"] ** 4 / q["K"] for q in pts], float)
      stale = np.array([q["stale"] for q in pts])
      grad = np.array([q["grad"] for q in pts])
      slope, c = loglog_slope(x, stale)
      Ss = sorted({q["S"] for q in pts})
      cmap = plt.get_cmap("viridis")
      for n, S in enumerate(Ss):
        sel = np.array([q["S"] == S for q in pts])
        col = cmap(n / max(len(Ss) - 1, 1))
        ax.plot(x[sel], grad[sel], "o-", color=col, ms=3, lw=0.8, label=f"S={S}")
        ax.plot(x[sel], stale[sel], "s--", color=col, ms=3, lw=0.8)
      ax.plot([], [], "o-", color="gray", ms=3, lw=0.8,
              label=r"circles, solid: best mean $\|\nabla f\|^2$")
      ax.plot([], [], "s--", color="gray", ms=3, lw=0.8,
              label="squares, dashed: stale-read term at that $\\gamma$")
      xs = np.geomspace(x.min(), x.max(), 20)
      ax.plot(xs, np.exp(c) * xs ** slope, "k:",
              label=f"dotted: fit to the squares, slope {slope:.2f}")
      ax.set_xscale("log")
      ax.set_yscale("log")
      ax.set_xlabel(r"$S^4/K$  (K = iterations)")
      ax.set_ylabel(r"mean over $k<K$ at the best $\gamma$")
      ax.set_title(f"{p['label']}, {rule}", fontsize=9)
      ax.legend(fontsize=6)
      n_edge = sum(q["edge"] for q in pts)
      findings.append(f"{p['label']} / {rule}: stale term ~ (S^4/K)^{slope:.2f}"
                      + (f" ({n_edge} of {len(pts)} best gammas at the grid's edge)"
                         if n_edge else ""))
      for q in pts:
        table.append(dict(experiment="tuned_rate", problem=p["label"], rule=rule, **q,
                          S4_over_K=q["S"] ** 4 / q["K"], fitted_slope=slope))
  fig.suptitle("Tuned rate: best step size of the grid per (S, K); circles = mean "
               r"$\|\nabla f(x^k)\|^2$, squares = stale-read term", fontsize=10)
  fig.tight_layout()
  files = save_figure(fig, out_dir, cfg["name"])
  sentence = ("At the best step size of the grid, the stale-read term against S^4/K: "
              + "; ".join(findings) + " (slope 1 with one line for all S would be Theta(S^4/K)).")
  return {"figures": files, "finding": sentence, "table": table}
