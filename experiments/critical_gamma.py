"""Critical step size: the largest stable gamma on a quadratic versus S.

Vectorised bisection per (rule, S): a geometric grid of ``grid`` gammas over
``[gamma_lo, gamma_hi]`` runs as one vmapped sweep; each further round puts a finer grid
strictly between the largest stable gamma below the first unstable one and that unstable one.
Stable means not diverged and ``||grad f(x^K)||^2 <= min(||grad f(x^0)||^2,
||grad f(x^{K/2})||^2)`` (exact gradients: an unstable mode grows geometrically, so it
eventually dominates; close to the threshold the growth is slow, so the estimate is a
finite-``K`` one). The estimate is the geometric mean of the final
bracket ``[lo, hi]``.

What is compared with. Two predictions, both from the delay formula ``tau_max(S) = S^2 - S/2
+ O(1)`` (``rpd.theory.delay``):

* delayed gradient descent: ``x_{t+1} = x_t - gamma A x_{t-m}`` is stable iff ``gamma L < 2
  sin(pi / (2 (2 m + 1)))`` (the classical bound for a scalar delayed recursion). Counting
  time in *rounds* of ``S`` block updates (one microbatch of PipeDream, on average one
  update of every block for ``rpd``), the oldest read is ``m = tau_max(S) / S ~ S`` rounds
  old, so ``gamma_crit ~ pi / (4 L S)``: exponent ``-1``;
* the step-size condition of delayed-SGD analyses, ``gamma <= 1 / (L tau_max)``, which
  counts delays in single block updates: exponent ``-2``.
"""
from __future__ import annotations

import math

import numpy as np

from rpd.experiments.common import (Progress, ResultsStore, loglog_slope, run_batches,
                                   save_figure)
from rpd.experiments.runner import batch_configs, run_engine_batch


FIGURE_DOC = ("Largest stable step size on a quadratic with exact gradients against S for "
              "pipedream and rpd (bisection brackets as error bars), with fitted exponents and "
              "two predictions from the delay formula: delayed gradient descent with a delay "
              "of tau_max(S)/S rounds (exponent -1) and 1/(L tau_max) (exponent -2).")

def K_for(cfg: dict, S: int) -> int:
  """Iterations: ``K_microbatches * S * (tau_max // S + 1)``, an even multiple of ``S``."""
  from rpd.theory.delay import tau_max
  rounds = cfg["K_microbatches"] * (tau_max(S) // S + 1)
  return int(2 * -(-rounds // 2) * S)  # even number of rounds: a record at K / 2


def _stable(res: dict) -> bool:
  """Not diverged, and ``||grad f||^2`` at ``K`` below its value at ``0`` and at ``K / 2``."""
  g = res["grad_norm_sq"]
  return (not res["diverged"]) and math.isfinite(g[-1]) and g[-1] <= g[0] and g[-1] <= g[-2]


def _bracket_of(results) -> tuple:
  """``(lo, hi)`` from ``[(gamma, stable), ...]``: ``hi`` the smallest unstable gamma, ``lo``
  the largest stable gamma below it (``None`` where there is none)."""
  res = sorted(results)
  unstable = [g for g, ok in res if not ok]
  hi = min(unstable) if unstable else None
  stable_below = [g for g, ok in res if ok and (hi is None or g < hi)]
  lo = max(stable_below) if stable_below else None
  return lo, hi


def grids(cfg: dict, lo, hi, round_: int):
  """The gammas of round ``round_`` given the current bracket."""
  if round_ == 0:
    return np.geomspace(cfg["gamma_lo"], cfg["gamma_hi"], cfg["grid"])
  if lo is None or hi is None:
    return None
  return np.geomspace(lo, hi, cfg["grid"] + 2)[1:-1]


def search(cfg: dict, store: ResultsStore, rule: str, S: int, run_missing: bool = True,
           on_round=None) -> tuple:
  """The bisection of (rule, S), round by round; returns the final ``(lo, hi)``.

  Round ``r``'s grid is a function of the configuration and the results of rounds ``0..r-1``
  only: the bracket is recomputed from exactly the configurations those rounds asked for
  (looked up by key), never from whatever else the results file holds. So a rerun (of a
  finished or an interrupted search) asks for the same configurations, finds them done and
  ends with the same bracket as one clean run. With ``run_missing=False`` (plotting) the
  replay stops at the first round whose results are not all there.
  """
  spec = {k: v for k, v in cfg["problem"].items() if k != "label"}
  K = K_for(cfg, S)
  seen: list[tuple[float, bool]] = []
  lo = hi = None
  for rnd in range(cfg["rounds"]):
    gs = grids(cfg, lo, hi, rnd)
    if gs is not None:
      base = {"experiment": cfg["name"], "round": rnd}
      if run_missing:
        run_engine_batch(store, base, spec, rule, S, gs, np.full(len(gs), cfg["seed"]), K,
                         K // 2, metrics=("grad_norm_sq",))  # all _stable reads
      rows = [store.get(c) for c in batch_configs(base, spec, rule, S, gs,
                                                  np.full(len(gs), cfg["seed"]), K, K // 2)]
      if any(r is None for r in rows):
        break
      seen += [(r["config"]["gamma"], _stable(r["result"])) for r in rows]
      lo, hi = _bracket_of(seen)
    if on_round is not None:
      on_round()
  return lo, hi


def run(cfg: dict, store: ResultsStore, progress: bool = True, jobs: int = 1) -> int:
  """Every (rule, S) search (``jobs``: searches at once, each in a thread of its own,
  :func:`rpd.experiments.common.run_batches`; a search's rounds run in turn)."""
  batches = [(r, S) for r in cfg["rules"] for S in cfg["stages"]]
  bar = Progress(len(batches) * cfg["rounds"], cfg["name"], progress)
  n0 = len(store.rows)
  run_batches(lambda rule, S: search(cfg, store, rule, S, run_missing=True,
                                     on_round=bar.update), batches, jobs)
  bar.close()
  return len(store.rows) - n0


def _bracket(cfg, store, rule, S):
  """Final ``(lo, hi)`` of the search of (rule, S) from the stored results (runs nothing)."""
  return search(cfg, store, rule, S, run_missing=False)


def predictions(S: np.ndarray, L: float) -> dict:
  """The two predicted critical step sizes (see the module docstring)."""
  from rpd.theory.delay import tau_max
  tm = np.array([tau_max(int(s)) for s in S], float)
  m = tm / S  # the delay in rounds (d is the dimension)
  return {"delayed GD, delay m = tau_max/S rounds": 2 * np.sin(np.pi / (2 * (2 * m + 1))) / L,
          "1 / (L tau_max)": 1.0 / (L * np.maximum(tm, 1))}


def plot(cfg: dict, store: ResultsStore, out_dir: str) -> dict:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  L = cfg["problem"]["options"].get("L", 1.0)
  S_arr = np.array(cfg["stages"])
  fig, ax = plt.subplots(figsize=(6.4, 4.6))
  table, parts = [], []
  colors = {"pipedream": "C0", "rpd": "C3"}
  for rule in cfg["rules"]:
    br = [(_bracket(cfg, store, rule, int(S))) for S in S_arr]
    ok = np.array([lo is not None and hi is not None for lo, hi in br])
    lo = np.array([b[0] if o else np.nan for b, o in zip(br, ok)], float)
    hi = np.array([b[1] if o else np.nan for b, o in zip(br, ok)], float)
    est = np.sqrt(lo * hi)
    fit_sel = ok & (S_arr >= 2)
    p, _ = loglog_slope(S_arr[fit_sel], est[fit_sel])
    # Interval from the bisection brackets: the steepest and the shallowest fits that the
    # brackets allow (hi ends below the median S with lo ends above it, and vice versa).
    Sf, lof, hif = S_arr[fit_sel], lo[fit_sel], hi[fit_sel]
    small = Sf <= np.median(Sf)
    p_steep, _ = loglog_slope(Sf, np.where(small, hif, lof))
    p_flat, _ = loglog_slope(Sf, np.where(small, lof, hif))
    rng_ = (min(p_steep, p_flat), max(p_steep, p_flat))
    ax.errorbar(S_arr[ok], est[ok], yerr=[est[ok] - lo[ok], hi[ok] - est[ok]], fmt="o-",
                color=colors.get(rule, "k"), capsize=3,
                label=f"{rule} (measured): exponent {p:.2f} [{rng_[0]:.2f}, {rng_[1]:.2f}]")
    parts.append(f"{rule} gamma_crit ~ S^{p:.2f} (bisection brackets allow "
                 f"{rng_[0]:.2f}..{rng_[1]:.2f})")
    for S, a, b, e in zip(S_arr, lo, hi, est):
      table.append(dict(experiment="critical_gamma", rule=rule, S=int(S), gamma_lo=a,
                        gamma_hi=b, gamma_crit=e, exponent=p, K=K_for(cfg, int(S))))
  Sx = S_arr[S_arr >= 1]
  preds = predictions(Sx, L)
  for (name, val), ls in zip(preds.items(), ("--", ":")):
    pp, _ = loglog_slope(Sx[Sx >= 2], val[Sx >= 2])
    ax.plot(Sx, val, ls, color="k", label=f"prediction {name}: exponent {pp:.2f}")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("stages S")
  ax.set_ylabel(r"largest stable step size $\gamma$ (L = %g)" % L)
  opts = cfg["problem"]["options"]
  ax.set_title(f"Critical step size, {cfg['problem']['label']} "
               f"(dimension d={opts.get('d')}, mu={opts.get('mu')})", fontsize=9)
  ax.legend(fontsize=7)
  fig.tight_layout()
  files = save_figure(fig, out_dir, cfg["name"])
  d_pred = predictions(np.array([2.0, float(S_arr.max())]), L)
  sentence = ("Largest stable step size: " + "; ".join(parts) + "; the delayed-GD prediction "
              "(delay tau_max/S rounds) has exponent -1 asymptotically, 1/(L tau_max) has -2.")
  return {"figures": files, "finding": sentence, "table": table,
          "predictions_at_extremes": {k: v.tolist() for k, v in d_pred.items()}}
