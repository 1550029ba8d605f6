"""PipeDream versus LocalSGD on the same ``S`` devices: loss against simulated time.

PipeDream runs ``microbatches`` microbatches (``K = microbatches * S`` block updates of the
engine's ``pipedream`` rule); a record at iteration ``k`` is placed at the simulated time
``T_PD(k / S)`` (:func:`rpd.simtime.pipedream_times`). The time budget is ``T = T_PD(
microbatches)``. LocalSGD with ``W = S`` workers and ``H`` local steps runs the smallest number
of rounds whose simulated time (:func:`rpd.simtime.localsgd_round_times`) reaches ``T``; both
methods then compute about the same number of stochastic gradients (PD one per microbatch,
LocalSGD ``S`` per local step, one local step per ``S (F + B)`` units).

Each method takes its best step size (and ``H``) from the grid by the mean over seeds of the
loss over the last quarter of the budget (records with ``3T/4 <= t <= T``, which smooths the
noise of single records; diverged runs count as ``inf``). The
verdict compares the two at ``T`` for every ``S``: the excess loss ``f - f*`` (quadratic: exact
``f*``; logistic regression: ``min f`` by Newton's method on the full data; character LM: the
source's entropy rate, so the excess is over the best achievable loss), a *tie* when the two
differ by less than ``tie_rtol`` relative or both are below ``tie_atol * max(1, |f*|)``
(solved to float32 resolution).
"""
from __future__ import annotations

import math

import numpy as np

from rpd.experiments.common import Progress, ResultsStore, run_batches, save_figure
from rpd.experiments.runner import run_engine_batch, run_localsgd_batch


FIGURE_DOC = ("Loss against simulated time for PipeDream and LocalSGD on the same S devices, "
              "each at its best step size (and H) of the grid: the excess f - f* on a log "
              "scale for the quadratics and logistic regression; for the character LM the "
              "evaluation loss in nats on a linear scale with the source's entropy rate "
              "dotted (a finite evaluation set can dip below it, so the excess is not plotted "
              "on a log scale).")

# The record metrics the figure reads: the loss only (the others would cost two more
# full-data gradients per record and their code in every compiled program).
METRICS = ("loss",)


def _cost(cfg):
  from rpd.simtime import cost_model_from_dict
  return cost_model_from_dict(cfg["cost"])


def budget(cfg: dict, S: int) -> float:
  """The common simulated-time budget ``T_PD(microbatches)`` for ``S`` stages."""
  from rpd.simtime import pipedream_time
  return pipedream_time(cfg["microbatches"], S, _cost(cfg))


def localsgd_rounds(cfg: dict, S: int, H: int, d: int) -> tuple[int, int]:
  """``(rounds, record_every)``: enough rounds to reach the budget, records every few."""
  from rpd.simtime import localsgd_round_times
  T = budget(cfg, S)
  one = localsgd_round_times(1, H, S, d, _cost(cfg))[0]
  R = max(1, math.ceil(T / one - 1e-9))
  rec = max(1, math.ceil(R / cfg["n_records"]))
  return rec * math.ceil(R / rec), rec


def _spec(p):
  return {k: v for k, v in p.items() if k not in ("label", "gammas", "stages", "H")}


def _d(p, S):
  from rpd.experiments.runner import build_problem
  return build_problem(_spec(p), S).d


def run(cfg: dict, store: ResultsStore, progress: bool = True, jobs: int = 1) -> int:
  """Run every missing configuration; returns how many ran.

  ``jobs``: batches run at once (:func:`rpd.experiments.common.run_batches`; the language
  models, last in the config, start first); the results do not depend on it.
  """
  batches = [(p, S, H) for p in cfg["problems"] for S in p.get("stages", cfg["stages"])
             for H in [None] + list(p.get("H", cfg["H"]))]
  bar = Progress(len(batches), cfg["name"], progress)
  base = {"experiment": cfg["name"], "cost": cfg["cost"], "microbatches": cfg["microbatches"]}

  def one(p, S, H):
    gs, ss = np.meshgrid(p["gammas"], cfg["seeds"], indexing="ij")
    if H is None:
      K = cfg["microbatches"] * S
      n = run_engine_batch(store, base, _spec(p), "pipedream", S, gs.ravel(), ss.ravel(),
                           K, K // cfg["n_records"], metrics=METRICS)
    else:
      R, rec = localsgd_rounds(cfg, S, H, _d(p, S))
      n = run_localsgd_batch(store, base, _spec(p), H, S, gs.ravel(), ss.ravel(), R, rec,
                             _cost(cfg), metrics=METRICS)
    bar.update()
    return n

  ran = sum(run_batches(one, batches, jobs))
  bar.close()
  return ran


def _pd_curve(cfg, res, S):
  from rpd.simtime import pipedream_times
  k = np.asarray(res["k"])
  n = k // S
  times = pipedream_times(cfg["microbatches"], S, _cost(cfg))
  t = np.where(n > 0, times[np.maximum(n - 1, 0)], 0.0)
  return t, np.asarray(res["loss"], float)


def _at(t, y, T, frac=0.25):
  """Mean over the records in the last ``frac`` of the budget, ``(1 - frac) T <= t <= T``
  (the last record before ``T`` if none); ``inf`` if any of them is not finite."""
  t, y = np.asarray(t), np.asarray(y, float)
  sel = np.where((t <= T * (1 + 1e-12)) & (t >= (1 - frac) * T))[0]
  if sel.size == 0:
    sel = np.where(t <= T * (1 + 1e-12))[0][-1:]
  v = y[sel]
  return float(v.mean()) if v.size and np.all(np.isfinite(v)) else np.inf


def best_curves(cfg: dict, store: ResultsStore, p: dict, S: int) -> dict:
  """Best PD and LocalSGD configurations at the budget, with their mean curves."""
  T = budget(cfg, S)
  spec = _spec(p)
  out = {}
  cands = {"pipedream": [], "localsgd": []}
  for g in p["gammas"]:
    rows = store.select(experiment=cfg["name"], microbatches=cfg["microbatches"],
                        cost=cfg["cost"], problem=spec, rule="pipedream", S=S,
                        gamma=float(g))
    if rows:
      curves = [_pd_curve(cfg, r["result"], S) for r in rows]
      cands["pipedream"].append((dict(gamma=g), curves))
    for H in p.get("H", cfg["H"]):
      rows = store.select(experiment=cfg["name"], microbatches=cfg["microbatches"],
                          cost=cfg["cost"], problem=spec, method="localsgd", H=H, S=S,
                          gamma=float(g))
      if rows:
        curves = [(np.asarray(r["result"]["time"]), np.asarray(r["result"]["loss"], float))
                  for r in rows]
        cands["localsgd"].append((dict(gamma=g, H=H), curves))
  for method, lst in cands.items():
    scored = []
    for params, curves in lst:
      final = float(np.mean([_at(t, y, T) for t, y in curves]))
      scored.append((final, params, curves))
    if not scored:
      continue
    scored.sort(key=lambda s: s[0])
    final, params, curves = scored[0]
    t = curves[0][0]
    y = np.mean([c[1] for c in curves], axis=0)
    out[method] = dict(final=final, params=params, t=t, y=y,
                       edge=("gamma" in params and params["gamma"] in
                             (min(p["gammas"]), max(p["gammas"]))))
  out["T"] = T
  return out


def plot(cfg: dict, store: ResultsStore, out_dir: str) -> dict:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  probs, stages = cfg["problems"], cfg["stages"]
  fig, axes = plt.subplots(len(probs), len(stages), figsize=(3.6 * len(stages), 3.2 * len(probs)),
                           squeeze=False)
  table, verdicts = [], []
  for a, p in enumerate(probs):
    f_star = None
    wins = []
    for b, S in enumerate(stages):
      if S not in p.get("stages", stages):  # this objective runs fewer S (quick mode)
        axes[a][b].axis("off")
        axes[a][b].text(0.5, 0.5, f"{p['label']}, S={S}:\nnot run in this mode\n(S in "
                        f"{{{', '.join(map(str, p['stages']))}}} only)", ha="center",
                        va="center", fontsize=8, color="gray", transform=axes[a][b].transAxes)
        continue
      ax = axes[a][b]
      best = best_curves(cfg, store, p, S)
      if "pipedream" not in best or "localsgd" not in best:
        continue
      if f_star is None:
        rows = store.select(experiment=cfg["name"], problem=_spec(p), S=S)
        f_star = rows[0]["result"].get("f_star") if rows else None
      gap = f_star is not None and not p["name"].startswith("charlm")
      shift = f_star if gap else 0.0
      for method, col in (("pipedream", "C0"), ("localsgd", "C3")):
        bc = best[method]
        lab = (f"PD, $\\gamma$={bc['params']['gamma']:g}" if method == "pipedream" else
               f"LocalSGD, H={bc['params']['H']}, $\\gamma$={bc['params']['gamma']:g}")
        y = bc["y"] - shift
        ax.plot(bc["t"], np.where(np.isfinite(y), y, np.nan), color=col, label=lab)
      if f_star is not None and not gap:
        ax.axhline(f_star, color="k", ls=":", lw=1, label=f"entropy rate {f_star:.3f}")
      ax.axvline(best["T"], color="gray", ls="--", lw=0.7)
      ax.set_xlim(0, best["T"] * 1.02)
      if gap:
        ax.set_yscale("log")
      ax.set_xlabel("simulated time (units of one stage forward)")
      ax.set_ylabel("f(x) - f*" if gap else "loss (nats)" if f_star else "loss")
      ax.set_title(f"{p['label']}, S={S}", fontsize=9)
      ax.legend(fontsize=6.5)
      pd_f, ls_f = best["pipedream"]["final"], best["localsgd"]["final"]
      ex = f_star if f_star is not None else 0.0
      pd_e, ls_e = pd_f - ex, ls_f - ex
      tol = cfg["tie_rtol"] * min(abs(pd_e), abs(ls_e))
      floor = cfg.get("tie_atol", 0.0) * max(1.0, abs(f_star or 0.0))
      both_solved = max(pd_e, ls_e) <= floor
      winner = ("tie" if abs(pd_e - ls_e) <= tol or both_solved else
                ("PipeDream" if pd_e < ls_e else "LocalSGD"))
      wins.append((S, winner, pd_e, ls_e))
      table.append(dict(experiment="pd_vs_localsgd", problem=p["label"], S=S, budget=best["T"],
                        pd_gamma=best["pipedream"]["params"]["gamma"],
                        ls_gamma=best["localsgd"]["params"]["gamma"],
                        ls_H=best["localsgd"]["params"]["H"],
                        pd_final=pd_f, ls_final=ls_f, f_star=f_star,
                        excess_measure="f - f*" if f_star is not None else "loss",
                        pd_excess=pd_e, ls_excess=ls_e, winner=winner,
                        pd_gamma_at_grid_edge=best["pipedream"]["edge"],
                        ls_gamma_at_grid_edge=best["localsgd"]["edge"]))
    if wins:
      what = "f - f*" if f_star is not None else "loss"
      detail = ", ".join(f"S={S}: {w} ({what} PD {pe:.3g} vs LS {le:.3g})"
                         for S, w, pe, le in wins)
      verdicts.append(dict(problem=p["label"], wins=wins, sentence=f"{p['label']}: {detail}"))
  fig.suptitle("PipeDream vs LocalSGD at the best step size (and H) of the grid; dashed line ="
               " time budget; cost model " + ", ".join(f"{k}={v}" for k, v in cfg["cost"].items()),
               fontsize=9)
  fig.tight_layout()
  files = save_figure(fig, out_dir, cfg["name"])
  claims = {"quadratic": "PipeDream", "character LM": "PipeDream", "logistic": "LocalSGD"}
  summary = []
  for v in verdicts:
    largest = v["wins"][-1][1]
    claim = next((w for k, w in claims.items() if v["problem"].startswith(k)), None)
    agrees = claim is not None and largest == claim
    v["winner_at_largest_S"] = largest
    v["paper"] = claim
    v["agrees"] = agrees
    by_S = ", ".join(f"S={S}: {w}" for S, w, _, _ in v["wins"])
    summary.append(f"{v['problem'].split(' (')[0]}: {by_S} -> at the largest S "
                   f"{'a tie' if largest == 'tie' else largest + ' wins'}, "
                   + (f"{'agreeing' if agrees else 'disagreeing'} with the paper ({claim})"
                      if claim is not None else "the paper makes no claim for this objective"))
  sentence = "At equal simulated time, " + "; ".join(summary) + "."
  return {"figures": files, "finding": sentence, "table": table, "verdicts": verdicts}
