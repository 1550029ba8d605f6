"""Which mitigation trains faster? Each rule at its own tuned step size, against S.

For every problem, rule and S (config :mod:`rpd.experiments.configs.mitigations`): one
vmapped :func:`rpd.engine.sweep` over the step-size grid and seeds (one compiled program),
``K = microbatches * S`` block updates. Per rule: the tuned gamma (lowest mean final loss
over seeds; a diverged run counts as infinite), the loss reached after ``K`` at that gamma
(excess over ``f*`` where ``f*`` is known: quadratic, logistic regression) and the
microbatches it takes to reach a target (``target_frac`` of the largest decrease any rule
reaches at that S; read at the record points). Secondary panel: the largest stable nominal
gamma of the grid, and for ``adapt`` its effective step ``gamma * mean_b 1/(1 + tau_b)``
(the delay-scaled step its update actually takes). The finding compares every mitigation
with its base rule from these numbers, including where none helps.
"""
from __future__ import annotations

import numpy as np

from rpd.experiments.common import Progress, ResultsStore, run_batches, save_figure
from rpd.experiments.runner import run_engine_batch

FIGURE_DOC = ("Mitigations at their own tuned step size against S: loss reached after K "
              "microbatches (left), microbatches to a common target (middle), and, secondary, "
              "the largest stable nominal step size with adapt's effective step (right); "
              "quadratic, logistic regression, transformer LM.")


def _spec(prob: dict) -> dict:
  return {k: v for k, v in prob.items() if k not in ("label", "stages")}


def _stages(cfg, prob):
  return prob.get("stages", cfg["stages"])


def _K(cfg, S):
  return cfg["microbatches"] * S


def run(cfg: dict, store: ResultsStore, progress: bool = True, jobs: int = 1) -> int:
  """One sweep per (problem, rule, S) over ``gammas x seeds``; reruns skip finished work
  (``jobs``: batches at once, :func:`rpd.experiments.common.run_batches`)."""
  batches = [(prob, rule, S) for prob in cfg["problems"] for rule in cfg["rules"]
             for S in _stages(cfg, prob)]
  bar = Progress(len(batches), cfg["name"], progress)
  g, s = np.meshgrid(cfg["gammas"], cfg["seeds"], indexing="ij")

  def one(prob, rule, S):
    K = _K(cfg, S)
    n = run_engine_batch(store, {"experiment": cfg["name"]}, _spec(prob), rule, S,
                         g.ravel(), s.ravel(), K, K // cfg["n_records"],
                         metrics=("loss",))  # all the figure reads
    bar.update()
    return n

  ran = sum(run_batches(one, batches, jobs))
  bar.close()
  return ran


def _curves(cfg, store, prob, rule, S):
  """``(k (R,), loss (G, R) mean over seeds; inf where any seed diverged), f*``."""
  rows = store.select(experiment=cfg["name"], problem=_spec(prob), rule=rule, S=S,
                      K=_K(cfg, S))
  curves, k, f_star = [], None, None
  for gamma in cfg["gammas"]:
    rs = [r["result"] for r in rows if r["config"]["gamma"] == gamma]
    loss = np.array([np.asarray(r["loss"], float) for r in rs])
    bad = any(r["diverged"] for r in rs) | ~np.all(np.isfinite(loss), axis=0)
    curves.append(np.where(bad, np.inf, loss.mean(axis=0)))
    k = np.asarray(rs[0]["k"], float)
    f_star = rs[0].get("f_star")
  return k, np.array(curves), f_star


def tuned(cfg, store, prob, rule, S) -> dict:
  """The rule at its tuned gamma: ``gamma``, ``final`` (excess) loss, ``curve``, ``k``,
  ``stable_gamma`` (largest grid gamma that did not diverge or grow)."""
  k, curves, f_star = _curves(cfg, store, prob, rule, S)
  excess = curves - (f_star or 0.0)
  n = int(np.argmin(excess[:, -1]))
  ok = np.isfinite(curves[:, -1]) & (curves[:, -1] <= curves[:, 0])
  stable = max([g for g, o in zip(cfg["gammas"], ok) if o], default=np.nan)
  return dict(gamma=cfg["gammas"][n], final=float(excess[n, -1]), curve=excess[n], k=k,
              stable_gamma=stable, start=float(excess[n, 0]))


def effective_factor(rule_spec: str, S: int) -> float:
  """``mean_b 1 / (1 + tau_b)``, ``tau_b`` the delay in gradients the ``adapt`` mitigation
  divides the step of block ``b``'s update by (from the rule's delay table); 1 otherwise."""
  from rpd.rules import get_rule
  rule = get_rule(rule_spec, S)
  hooks = getattr(rule.hook, "hooks", (rule.hook,))
  adapt = [h for h in hooks if type(h).__name__ == "DelayAdaptive"]
  if not adapt:
    return 1.0
  base = get_rule(rule_spec.partition(":")[2] or "pipedream", S)
  if hasattr(base, "program"):
    table = base.program().delay_table()
  elif getattr(base, "tau", None) is not None:
    table = np.asarray(base.tau)
  else:
    return float("nan")
  tau = table.max(axis=-1) // adapt[0].unit  # delay of each row in gradients
  den = 1 + tau if adapt[0].mode == "1p" else np.maximum(tau, 1)
  return float(np.mean(1.0 / den))


def _to_target(t, target, S):
  hit = np.flatnonzero(t["curve"] <= target)
  return float(t["k"][hit[0]] / S) if hit.size else np.inf


def _verdict(r, tie):
  return ("helps" if r < 1 - tie else "hurts" if r > 1 + tie else "makes no difference")


def plot(cfg: dict, store: ResultsStore, out_dir: str) -> dict:
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  probs = cfg["problems"]
  fig, axes = plt.subplots(len(probs), 3, figsize=(14, 3.6 * len(probs)), squeeze=False)
  table, sentences, helped = [], [], {}
  for row, prob in zip(axes, probs):
    S_all = _stages(cfg, prob)
    res = {(r, S): tuned(cfg, store, prob, r, S) for r in cfg["rules"] for S in S_all}
    for S in S_all:  # the target of each S: a fraction of the largest decrease reached
      start = res[(cfg["rules"][0], S)]["start"]
      best = min(res[(r, S)]["final"] for r in cfg["rules"])
      target = start - cfg["target_frac"] * (start - best)
      for r in cfg["rules"]:
        res[(r, S)]["to_target"] = _to_target(res[(r, S)], target, S)
    for n, rule in enumerate(cfg["rules"]):
      ls = "-" if rule not in cfg["base_of"] else "--"
      fin = [res[(rule, S)]["final"] for S in S_all]
      tt = [res[(rule, S)]["to_target"] for S in S_all]
      stab = np.array([res[(rule, S)]["stable_gamma"] for S in S_all])
      row[0].plot(S_all, fin, "o" + ls, color=f"C{n}", label=rule)
      row[1].plot(S_all, tt, "o" + ls, color=f"C{n}", label=rule)
      row[2].plot(S_all, stab, "o" + ls, color=f"C{n}", label=f"{rule} (nominal)")
      if rule.startswith("adapt"):
        eff = stab * np.array([effective_factor(rule, S) for S in S_all])
        row[2].plot(S_all, eff, "x:", color=f"C{n}", label=f"{rule} (effective step)")
      for S in S_all:
        t = res[(rule, S)]
        table.append(dict(experiment="mitigations", problem=prob["name"], rule=rule, S=int(S),
                          tuned_gamma=t["gamma"], final=t["final"],
                          microbatches_to_target=t["to_target"],
                          stable_gamma=t["stable_gamma"]))
    what = "excess loss" if res[(cfg["rules"][0], S_all[0])]["start"] != 0 else "loss"
    for ax, ylab in zip(row, (f"{what} after K at tuned gamma", "microbatches to target",
                              "largest stable gamma (secondary)")):
      ax.set_xscale("log", base=2)
      ax.set_yscale("log")
      ax.set_xlabel("stages S")
      ax.set_ylabel(ylab)
      ax.set_title(prob["label"], fontsize=9)
      ax.legend(fontsize=6)
    S = S_all[-1]
    for rule, base in cfg["base_of"].items():
      if rule not in cfg["rules"] or base not in cfg["rules"]:
        continue
      a, b = res[(rule, S)], res[(base, S)]
      r = a["final"] / b["final"] if b["final"] > 0 else np.nan
      v = _verdict(r, cfg["tie_rtol"])
      helped.setdefault(prob["name"], []).append(rule) if v == "helps" else None
      sentences.append(
          f"{rule} vs {base} ({prob['name']}, S={S}, K={cfg['microbatches']} microbatches, "
          f"each at its tuned gamma {a['gamma']:g} vs {b['gamma']:g}): the loss reached is "
          f"{r:.2f}x the base's and the target takes {a['to_target']:g} vs "
          f"{b['to_target']:g} microbatches, so it {v}.")
  for prob in probs:
    h = helped.get(prob["name"], [])
    sentences.append(f"On {prob['name']}: " + (f"{', '.join(h)} help(s) at tuned step sizes."
                                               if h else "no mitigation helps at tuned step "
                                               "sizes."))
  fig.tight_layout()
  files = save_figure(fig, out_dir, cfg["name"])
  return {"figures": files, "finding": " ".join(sentences), "table": table}
