"""How stale is PipeDream, from both sides: thresholds and stale excess against S.

Left panel (step sizes): the upper-bound step-size conditions ``gamma_max`` of every theorem
variant (``cs``, ``martingale``, ``block``), the exact mean and mean-square stability
thresholds (:mod:`rpd.theory.stability`) and the measured divergence threshold (engine
bisection) of ``pipedream`` and ``rpd`` on the isotropic quadratic. Right panel (stale
excess at a fixed ``gamma``): the exact stationary ``lim E||grad f||^2`` minus its value
without delays (the stale excess), the measured stationary value minus the same no-delay
value, and each bound's stale term. Exponents of ``S`` are least-squares fits on log-log.
"""
from __future__ import annotations

import math

import numpy as np

from rpd.experiments.common import (Progress, ResultsStore, check_interrupt, loglog_slope,
                                   metadata, release_compiled_programs, run_batches,
                                   save_figure)

FIGURE_DOC = ("Step sizes against S: the theorem's gamma_max (cs, martingale, block, the "
              "own-block theorem A7, the any-H theorems A8 and A9), exact "
              "mean and mean-square thresholds and measured divergence thresholds of "
              "pipedream and rpd on the isotropic quadratic; and the stale excess of the "
              "stationary E||grad f||^2 at a fixed gamma (exact, measured, bound terms), with "
              "fitted exponents.")


def _no_delay_excess(cfg, S):
  """Stationary ``E||grad f||^2`` of the same chain without delays (``t = 0``)."""
  from rpd.theory import stability as st
  g, L, s = cfg["gamma_excess"], cfg["L"], cfg["sigma"]
  return S * L ** 2 * st.chain_second_moment(0, 1.0, g * L, g ** 2 * s ** 2)[0]


def run(cfg: dict, store: ResultsStore, progress: bool = True, jobs: int = 1) -> int:
  """Every missing item (``jobs``: items at once, :func:`rpd.experiments.common.run_batches`;
  each is stored when it finishes)."""
  from rpd.theory import stability as st
  base = {"experiment": cfg["name"], "problem": cfg["problem"], "L": cfg["L"]}
  todo = []
  for rule in cfg["rules"]:
    for S in cfg["stages"]:
      todo.append(dict(base, kind="exact", rule=rule, S=S, gamma=cfg["gamma_excess"],
                       sigma=cfg["sigma"]))
      if S in cfg["measure_stages"]:
        todo.append(dict(base, kind="measured_threshold", rule=rule, S=S,
                         grid=cfg["measure_grid"], rounds=cfg["measure_rounds"],
                         K_rounds=cfg["measure_K_rounds"]))
      if S in cfg["excess_stages"]:
        todo.append(dict(base, kind="measured_excess", rule=rule, S=S,
                         gamma=cfg["gamma_excess"], sigma=cfg["sigma"],
                         seeds=cfg["excess_seeds"], K_rounds=cfg["excess_K_rounds"]))
  todo = store.missing(todo)
  bar = Progress(len(todo), cfg["name"], progress)

  def one(c):
    check_interrupt()
    t0 = __import__("time").time()
    if c["kind"] == "exact":
      r = st.thresholds(c["rule"], c["S"], c["problem"], c["L"], gamma=c["gamma"],
                        sigma=c["sigma"])
      res = {"mean_threshold": r["mean_threshold"],
             "mean_square_threshold": r["mean_square_threshold"],
             "stationary_excess": r["stationary_excess"],
             "gamma_max": st.gamma_max_theorem(c["S"], c["L"]),
             "bound_stale_term": st.stale_terms(c["S"], c["gamma"], c["sigma"], c["L"])}
    elif c["kind"] == "measured_threshold":
      res = st.measured_threshold(c["rule"], c["S"], c["problem"], c["L"], lo=0.02 / c["S"],
                                  hi=8.0 / c["S"], grid=c["grid"], rounds=c["rounds"],
                                  K_rounds=c["K_rounds"])
    else:
      res = st.measured_excess(c["rule"], c["S"], c["problem"], c["gamma"], c["sigma"],
                               c["L"], seeds=c["seeds"], K_rounds=c["K_rounds"])
    store.add([(c, res, metadata(wall_s=__import__("time").time() - t0))])
    release_compiled_programs()
    bar.update()

  run_batches(one, [(c,) for c in todo], jobs)
  bar.close()
  return len(todo)


def _get(store, cfg, kind, rule, S):
  rows = [r for r in store.select(experiment=cfg["name"], kind=kind, rule=rule, S=S,
                                  problem=cfg["problem"], L=cfg["L"])
          if kind == "measured_threshold" or r["config"].get("gamma") == cfg["gamma_excess"]]
  return rows[-1]["result"] if rows else None


def plot(cfg: dict, store: ResultsStore, out_dir: str) -> dict:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  S_arr = np.array(cfg["stages"], float)
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11.5, 4.6))
  table, fits = [], {}
  colors = {"pipedream": "C0", "rpd": "C3"}
  for rule in cfg["rules"]:
    ex = [_get(store, cfg, "exact", rule, int(S)) for S in S_arr]
    me = [_get(store, cfg, "measured_threshold", rule, int(S)) for S in S_arr]
    mean = np.array([e["mean_threshold"] if e else np.nan for e in ex])
    ms = np.array([e["mean_square_threshold"] if e else np.nan for e in ex])
    meas = np.array([m["measured_threshold"] if m and m["measured_threshold"] else np.nan
                     for m in me], float)
    for name, y, ls in (("exact mean", mean, "-"), ("exact mean-square", ms, "--"),
                        ("measured", meas, "o")):
      p, _ = loglog_slope(S_arr, y)
      fits[f"{rule} {name}"] = p
      ax1.plot(S_arr, y, ls, color=colors[rule], mfc="none",
               label=f"{rule} {name}: S^{p:.2f}")
    for S, a, b, c, e in zip(S_arr, mean, ms, meas, ex):
      table.append(dict(experiment=cfg["name"], rule=rule, S=int(S), mean_threshold=a,
                        mean_square_threshold=b, measured_threshold=c,
                        stationary_excess=e["stationary_excess"] if e else np.nan))
  ex0 = [_get(store, cfg, "exact", cfg["rules"][0], int(S)) for S in S_arr]
  for (v, ls) in zip(("cs", "martingale", "block"), (":", "-.", (0, (5, 1)))):
    y = np.array([e["gamma_max"][v] if e else np.nan for e in ex0])
    p, _ = loglog_slope(S_arr, y)
    fits[f"gamma_max {v}"] = p
    ax1.plot(S_arr, y, linestyle=ls, color="k", label=f"theorem gamma_max ({v}): S^{p:.2f}")
  from rpd.theory import first_order as fo  # proved under A7 (theory/THEOREM.md)
  from rpd.theory import stability as st
  y = np.array([fo.gamma_max(int(S), int(st.delay_table(int(S)).max()),
                             *fo.block_constants(st.hessian(cfg["problem"], int(S), cfg["L"]),
                                                 int(S))) for S in S_arr])
  p, _ = loglog_slope(S_arr, y)
  fits["gamma_max first_order"] = p
  ax1.plot(S_arr, y, "-", color="k", lw=2,
           label=f"theorem gamma_max (A7, own-block lemma): S^{p:.2f}")
  from rpd.theory import coupled  # any H with ||H|| <= L, additive table (theory/THEOREM.md)
  y = np.array([coupled.gamma_max(int(S), int(st.delay_table(int(S)).max()), cfg["L"])
                for S in S_arr])
  p, _ = loglog_slope(S_arr, y)
  fits["gamma_max coupled"] = p
  ax1.plot(S_arr, y, "--", color="tab:red", lw=2,
           label=f"theorem gamma_max (A8, any H, additive table): S^{p:.2f}")
  from rpd.theory import cyclic  # PD's cyclic order, any H (theory/THEOREM.md)
  y = np.array([cyclic.gamma_max(int(cyclic.cycle_table(st.delay_table(int(S)),
                                                        st.pipedream_order(int(S))).max()),
                                 cfg["L"], None) for S in S_arr])
  p, _ = loglog_slope(S_arr, y)
  fits["gamma_max cyclic"] = p
  ax1.plot(S_arr, y, ":", color="tab:blue", lw=2,
           label=f"theorem gamma_sup (A9, PD cyclic order, any H): S^{p:.2f}")
  ax1.set(xscale="log", yscale="log", xlabel="stages S", ylabel="step size gamma (L = 1)",
          title="Step sizes: upper-bound conditions vs exact and measured thresholds")
  ax1.set_xscale("log", base=2)
  ax1.legend(fontsize=6)
  # right panel: stale excess at fixed gamma
  for rule in cfg["rules"]:
    ex = [_get(store, cfg, "exact", rule, int(S)) for S in S_arr]
    nod = np.array([_no_delay_excess(cfg, int(S)) for S in S_arr])
    stale = np.array([e["stationary_excess"] if e else np.nan for e in ex]) - nod
    p, _ = loglog_slope(S_arr, stale)
    fits[f"{rule} exact stale excess"] = p
    ax2.plot(S_arr, stale, "-", color=colors[rule], label=f"{rule} exact: S^{p:.2f}")
    mS = [S for S in cfg["excess_stages"]]
    mv = [_get(store, cfg, "measured_excess", rule, S) for S in mS]
    y = np.array([m["measured_excess"] - _no_delay_excess(cfg, S) if m else np.nan
                  for m, S in zip(mv, mS)])
    err = np.array([2 * (m["sem"] or 0) if m else np.nan for m in mv])
    ax2.errorbar(mS, np.abs(y), yerr=err, fmt="o", color=colors[rule], mfc="none",
                 label=f"{rule} measured |excess - no-delay| (2 s.e.)")
  for (v, ls) in zip(("cs", "martingale", "block"), (":", "-.", (0, (5, 1)))):
    y = np.array([e["bound_stale_term"][v] if e else np.nan for e in ex0])
    p, _ = loglog_slope(S_arr, y)
    fits[f"bound stale term {v}"] = p
    ax2.plot(S_arr, y, linestyle=ls, color="k", label=f"bound stale term ({v}): S^{p:.2f}")
  # the any-H theorems' stale terms (a = 1) where gamma_excess is admissible (else no point)
  g_ex, L_, s2 = cfg["gamma_excess"], cfg["L"], cfg["sigma"] ** 2
  a8 = [coupled.stale_term_at(int(S), int(st.delay_table(int(S)).max()), g_ex, L_,
                              int(S) * s2) for S in S_arr]
  a9 = [cyclic.stale_term_at(int(cyclic.cycle_table(st.delay_table(int(S)),
                                                    st.pipedream_order(int(S))).max()),
                             g_ex, L_, int(S) * s2) for S in S_arr]
  for name, y, ls, col in (("A8, rpd", a8, "--", "tab:red"), ("A9, PD", a9, ":", "tab:blue")):
    y = np.array([np.nan if v is None else v for v in y], float)
    p, _ = loglog_slope(S_arr[np.isfinite(y)], y[np.isfinite(y)])
    fits[f"bound stale term {name}"] = p
    ax2.plot(S_arr, y, linestyle=ls, color=col, lw=2,
             label=f"bound stale term ({name}, a = 1, any H): S^{p:.2f}")
  ax2.set(xscale="log", yscale="log", xlabel="stages S",
          ylabel="stale excess of lim E||grad f||^2",
          title=f"Stale excess at gamma = {cfg['gamma_excess']}, sigma = {cfg['sigma']}")
  ax2.set_xscale("log", base=2)
  ax2.legend(fontsize=6)
  fig.tight_layout()
  files = save_figure(fig, out_dir, cfg["name"])
  truth = fits.get("pipedream exact mean-square", float("nan"))
  finding = (f"On the isotropic quadratic the exact stability thresholds scale as S^{truth:.2f} "
             f"(pipedream mean-square; rpd mean-square S^{fits.get('rpd exact mean-square', float('nan')):.2f}, "
             f"measured pipedream S^{fits.get('pipedream measured', float('nan')):.2f}), while the "
             f"theorem's step-size limits scale as S^{fits['gamma_max cs']:.2f} (cs), "
             f"S^{fits['gamma_max martingale']:.2f} (martingale) and "
             f"S^{fits['gamma_max block']:.2f} (block), and the own-block theorem's (A7, "
             f"theory/first_order.py) as S^{fits['gamma_max first_order']:.2f} and the one for "
             f"every H (A8, theory/coupled.py) as S^{fits['gamma_max coupled']:.2f}, PD's "
             f"cyclic order (A9, theory/cyclic.py) S^{fits['gamma_max cyclic']:.2f}; "
             f"the exact stale excess at fixed gamma "
             f"grows as S^{fits.get('pipedream exact stale excess', float('nan')):.2f} (pipedream) "
             f"and S^{fits.get('rpd exact stale excess', float('nan')):.2f} (rpd) against "
             f"S^{fits['bound stale term cs']:.2f} (cs) and "
             f"S^{fits['bound stale term martingale']:.2f} (martingale, block), "
             f"S^{fits['bound stale term A8, rpd']:.2f} (A8, rpd) and "
             f"S^{fits['bound stale term A9, PD']:.2f} (A9, PD) for the bounds.")
  for k, v in fits.items():
    table.append(dict(experiment=cfg["name"], quantity=k, exponent=v))
  return {"figures": files, "finding": finding, "table": table, "fits": fits}
