"""Checks that hunt: adversarial instances for the expected stale-read lemmas, exact moments.

Family (quadratics, :mod:`rpd.theory.lemma_exact`, no sampling): ``S`` blocks of one
coordinate, ``f = 1/2 x'Hx - c'x`` with ``H`` symmetric and possibly *indefinite* (the
lemmas assume no convexity), delays that put *feedback inside the read window* (a block read
fresh by itself and ``tau`` updates stale by the others), random tables, the PipeDream table
or *time-varying* tables ``T[k]``, noise on a *single block* or on all, ``x^0`` and ``c``
zero or not, ``gamma = u / (L max(1, tau))``.

Targets. For each variant's one formula ``rhs = P_W + P_0`` (``P_W`` the part in ``W``,
``P_0`` the noise part) the search maximizes ``max_k D_k / bound_k`` over the family for

* ``lemma``: the lemma itself (must stay ``<= 1``; its maximum is the lemma's tightest
  ratio, reported as ``min bound / lhs``),
* ``half_W`` / ``half_0``: ``P_W / 2 + P_0`` and ``P_W + P_0 / 2`` (a halved constant of the
  variant; must exceed 1 somewhere, else the check could not see the halving),
* ``tau_half_W`` / ``tau_half_0``: ``tau -> tau/2`` in that part only (a formula edit in a
  single place).

Search: random instances from the family, then coordinate-free hill climbing (Gaussian
perturbations of ``H, c, x^0``, the noise scales and ``log u``) from the best ones;
deterministic given the seed. ``python -m rpd.theory.adversary --search --write`` stores the
best instance of every (variant, target) in ``theory/adversarial.json``;
``python -m rpd.theory.adversary`` re-evaluates the stored instances exactly and prints the
README table (``tests/test_lemma_adversarial.py`` checks README == this output, the lemma
on every stored instance, and every mutant target above 1).
"""
from __future__ import annotations

import dataclasses
import json
import pathlib
import sys

import numpy as np
import sympy as sp

from rpd.theory import lemma_exact, theorem

STORE = pathlib.Path(__file__).with_name("adversarial.json")
TARGETS = ("lemma", "half_W", "half_0", "tau_half_W", "tau_half_0")


@dataclasses.dataclass
class Instance:
  """One quadratic instance of the family (all arrays float64 / int)."""
  H: np.ndarray
  c: np.ndarray
  Sigma: np.ndarray
  T: np.ndarray  # (S, S) or (K+1, S, S)
  gamma: float
  x0: np.ndarray
  K: int
  label: str = ""

  def to_json(self) -> dict:
    return {"H": self.H.tolist(), "c": self.c.tolist(), "Sigma": self.Sigma.tolist(),
            "T": np.asarray(self.T).tolist(), "gamma": self.gamma, "x0": self.x0.tolist(),
            "K": self.K, "label": self.label}

  @classmethod
  def from_json(cls, d: dict) -> "Instance":
    return cls(np.array(d["H"], float), np.array(d["c"], float), np.array(d["Sigma"], float),
               np.array(d["T"], int), float(d["gamma"]), np.array(d["x0"], float),
               int(d["K"]), d.get("label", ""))


def target_fns(variant: str) -> dict:
  """Target -> ``f(gamma, tau, S, W, sigma2)``, built from the variant's one formula."""
  from rpd.theory.theorem import S, W, gamma, sigma2, tau
  rhs = sp.expand(theorem.VARIANTS[variant].rhs)
  PW = sp.expand(sp.diff(rhs, W) * W)
  P0 = sp.expand(rhs - PW)
  half_tau = lambda e: e.subs(tau, tau / 2)
  exprs = {"lemma": rhs, "half_W": PW / 2 + P0, "half_0": PW + P0 / 2,
           "tau_half_W": half_tau(PW) + P0, "tau_half_0": PW + half_tau(P0)}
  return {k: sp.lambdify((gamma, tau, S, W, sigma2), e, "numpy") for k, e in exprs.items()}


def ratio(inst: Instance, fn, key: str = "D") -> float:
  """``max_{1 <= k <= K} D_k / bound_k`` (exact moments; ``0/0`` counts as 0).

  ``key`` names the exact left side in :func:`lemma_exact.stale_moments` (``"D"``: the whole
  stale error; ``"D_own"``: the updated block's own, :mod:`rpd.theory.first_order`)."""
  m = lemma_exact.stale_moments(inst.H, inst.c, inst.Sigma, inst.T, inst.gamma, inst.x0,
                                inst.K)
  Wk = lemma_exact.window_sums(m["G"], m["tau"])
  b = np.asarray(fn(inst.gamma, m["tau"], m["S"], Wk, m["sigma2"]), float) * np.ones_like(Wk)
  D = m[key]
  with np.errstate(divide="ignore", invalid="ignore"):
    r = np.where(b[1:] > 0, D[1:] / b[1:], np.where(D[1:] > 1e-300, np.inf, 0.0))
  return float(np.max(r))


# --- the family --------------------------------------------------------------------------

def random_instance(rng: np.random.Generator) -> Instance:
  """One random member of the adversarial family."""
  kind = rng.choice(["feedback", "feedback1", "random", "pipedream", "time"])
  S = int(rng.choice([1, 2, 2, 3, 3, 4] + ([8] if kind == "feedback1" else [])))
  tmax = int(rng.integers(1, 17 if S == 8 else 9))
  if kind == "feedback1":  # block 0 read fresh by itself, tmax stale by the others
    T = np.zeros((S, S), int)
    T[1:, 0] = tmax
    if S == 1:
      T[0, 0] = tmax
  elif kind == "feedback":
    T = np.full((S, S), tmax)
    np.fill_diagonal(T, 0)
    if S == 1:
      T[0, 0] = tmax
  elif kind == "pipedream" and S > 1:
    from rpd.theory.delay import tau_table
    T = np.asarray(tau_table(S), int)
  else:
    T = rng.integers(0, tmax + 1, size=(S, S))
  tau = int(np.max(T))
  K = int(min(3 * max(tau, 1) + 8, 48))
  if kind == "time":
    T = rng.integers(0, tmax + 1, size=(K + 1, S, S))
    tau = int(T.max())
  M = rng.standard_normal((S, S))
  H = (M + M.T) / 2
  if rng.random() < 0.3:  # negative curvature on one block only
    H = np.zeros((S, S))
    H[0, 0] = -1.0
  c = rng.standard_normal(S) * (rng.random() < 0.5)
  x0 = rng.standard_normal(S) * (rng.random() < 0.5)
  s = np.zeros(S)
  if rng.random() < 0.5:
    s[int(rng.integers(S))] = rng.uniform(0.1, 2)
  else:
    s = rng.uniform(0, 2, S) * (rng.random() < 0.8)
  L = max(float(np.abs(np.linalg.eigvalsh(H)).max()), 1e-3)
  u = float(np.exp(rng.uniform(np.log(0.01), np.log(2.0))))
  return Instance(H, c, np.diag(s ** 2), T, u / (L * max(1, tau)), x0, K, str(kind))


def random_quadratic(rng: np.random.Generator, d: int):
  """``(H, Sigma, c, x0, L)`` for the families of :mod:`rpd.theory.coupled` and
  :mod:`rpd.theory.cyclic`: ``H`` of ``+-`` rank one (30%), a single negative eigenvalue (15%)
  or dense symmetric; noise on one coordinate or on all (or none); ``c``, ``x0`` zero or not;
  ``L = max |eig H|``."""
  shape = rng.random()
  if shape < 0.3:
    v = rng.standard_normal(d)
    H = np.outer(v, v) * rng.choice([-1.0, 1.0])
  elif shape < 0.45:
    H = np.zeros((d, d))
    H[0, 0] = -1.0
  else:
    M = rng.standard_normal((d, d))
    H = (M + M.T) / 2
  L = max(float(np.abs(np.linalg.eigvalsh(H)).max()), 1e-3)
  s = np.zeros(d)
  if rng.random() < 0.5:
    s[int(rng.integers(d))] = rng.uniform(0.1, 2)
  else:
    s = rng.uniform(0, 2, d) * (rng.random() < 0.8)
  c = rng.standard_normal(d) * (rng.random() < 0.5)
  x0 = rng.standard_normal(d) * (rng.random() < 0.7)
  return H, np.diag(s ** 2), c, x0, L


def search_targets(score, target: str, noiseless_targets, generate, n_random: int,
                   n_climb: int, seed: int) -> tuple[float, Instance]:
  """:func:`maximize` of ``score(inst, target)`` over ``generate``'s family; for the targets
  in ``noiseless_targets`` (mutants of a gradient part) only noiseless members: with noise
  the search climbs to instances where the noise part alone is tight (ratio exactly 1),
  which cannot show a halved gradient part."""
  noiseless = target in noiseless_targets
  return maximize(lambda inst: score(inst, target), n_random, n_climb, seed,
                  accept=lambda i: not noiseless or not np.any(i.Sigma), generate=generate)


def perturb(inst: Instance, rng: np.random.Generator, scale: float) -> Instance:
  """A nearby instance (same S, delays and K)."""
  S = inst.H.shape[0]
  M = rng.standard_normal((S, S)) * scale
  H = inst.H + (M + M.T) / 2
  s = np.sqrt(np.clip(np.diag(inst.Sigma), 0, None))
  s = np.where(s > 0, s * np.exp(rng.standard_normal(S) * scale), 0.0)
  return Instance(H, inst.c + rng.standard_normal(S) * scale * (np.abs(inst.c).sum() > 0),
                  np.diag(s ** 2), inst.T, inst.gamma * float(np.exp(rng.standard_normal()
                                                                     * scale)),
                  inst.x0 + rng.standard_normal(S) * scale * (np.abs(inst.x0).sum() > 0),
                  inst.K, inst.label)


def issue_instance(gamma_L: float = 0.15, K: int = 60) -> Instance:
  """The instance of issue 17: ``S = 8``; block 0 read fresh by itself and ``16`` updates
  stale by the others (``T[i][0] = 16``, ``i > 0``; every other delay 0); ``H = -e_0 e_0'``
  (indefinite: negative curvature on block 0 only, ``L = 1``); noise ``N(0, 1)`` on block 0
  alone; ``x^0 = 0``; ``gamma = gamma_L / L``."""
  S = 8
  T = np.zeros((S, S), int)
  T[1:, 0] = 16
  H = np.zeros((S, S))
  H[0, 0] = -1.0
  Sigma = np.zeros((S, S))
  Sigma[0, 0] = 1.0
  return Instance(H, np.zeros(S), Sigma, T, gamma_L, np.zeros(S), K, "issue-17")


def maximize(score, n_random: int, n_climb: int, seed: int = 0, accept=lambda inst: True,
             generate=None) -> tuple[float, Instance]:
  """Maximize ``score(instance)`` over the family: ``n_random`` random members (those
  ``accept`` keeps), then hill climbing from the best three (``n_climb`` steps in all).
  ``generate(rng)`` draws a member (default :func:`random_instance`)."""
  rng = np.random.default_rng(seed)
  generate = random_instance if generate is None else generate
  best = []
  while len(best) < n_random:
    inst = generate(rng)
    if accept(inst):
      best.append((score(inst), inst))
  best.sort(key=lambda p: -p[0])
  r0, i0 = best[0]
  for start_r, start in best[:3]:
    r, inst = start_r, start
    scale = 0.3
    for _ in range(n_climb // 3):
      cand = perturb(inst, rng, scale)
      rc = score(cand)
      if np.isfinite(rc) and rc > r:
        r, inst = rc, cand
      else:
        scale = max(scale * 0.97, 0.01)
    if r > r0:
      r0, i0 = r, inst
  return r0, i0


def search(variant: str, target: str, n_random: int = 200, n_climb: int = 150,
           seed: int = 0) -> tuple[float, Instance]:
  """Maximize ``ratio`` of one target over the family (random start + hill climbing)."""
  fn = target_fns(variant)[target]
  return maximize(lambda inst: ratio(inst, fn), n_random, n_climb, seed)


def report_searches(found: dict, store: pathlib.Path | None) -> None:
  """Print ``{target: (ratio, Instance)}`` found by a search (``max Dg / bound``) and write
  the instances to ``store`` (``None``: do not write)."""
  for t, (r, inst) in found.items():
    print(f"{t}: max Dg / bound = {r:.4f} ({inst.label}, S = {np.asarray(inst.T).shape[-1]}, "
          f"d = {inst.H.shape[0]})", flush=True)
  if store is not None:
    store.write_text(json.dumps({t: inst.to_json() for t, (r, inst) in found.items()},
                                indent=0) + "\n")


def load_store() -> dict:
  """``{variant: {target: Instance}}`` from ``theory/adversarial.json``."""
  raw = json.loads(STORE.read_text())
  return {v: {t: Instance.from_json(d) for t, d in e.items()} for v, e in raw.items()}


def evaluate(store: dict | None = None) -> dict:
  """Every stored instance under every target of its variant, exactly.

  Returns:
    ``{variant: {"lemma_max": max over ALL stored instances of D/bound (must be <= 1),
    "tightest": 1 / lemma_max, target: ratio on that target's instance}}``.
  """
  store = load_store() if store is None else store
  every = [inst for e in store.values() for inst in e.values()] + [issue_instance()]
  out = {}
  for v in theorem.VARIANTS:
    fns = target_fns(v)
    lemma_max = max(ratio(inst, fns["lemma"]) for inst in every)
    row = {"lemma_max": lemma_max, "tightest": 1.0 / lemma_max if lemma_max > 0 else np.inf}
    for t in TARGETS[1:]:
      row[t] = max(ratio(inst, fns[t]) for inst in every)
    out[v] = row
  return out


def readme_table(ev: dict | None = None) -> str:
  """The README block: each lemma's tightest ratio and its mutants' worst ratios."""
  ev = evaluate() if ev is None else ev
  lines = ["| lemma | tightest bound / exact lhs | halved W part | halved noise part | "
           "tau/2 in W part | tau/2 in noise part |", "|---|---|---|---|---|---|"]
  for v, r in ev.items():
    cell = lambda t: f"{1 / r[t]:.3f}" + (" (false)" if r[t] > 1 + 1e-6 else "")
    lines.append(f"| {v} | {r['tightest']:.3f} | " + " | ".join(cell(t) for t in TARGETS[1:])
                 + " |")
  return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
  """``python -m rpd.theory.adversary [--search] [--write]``."""
  argv = sys.argv[1:] if argv is None else argv
  if "--search" in argv:
    store, found = {}, {}
    for v in theorem.VARIANTS:
      store[v] = {}
      for k, t in enumerate(TARGETS):
        r, inst = search(v, t, seed=k)
        store[v][t] = inst
        found[f"{v}/{t}"] = r
        print(f"{v:10s} {t:11s} max D/bound = {r:.4f} ({inst.label}, S = {inst.H.shape[0]})",
              flush=True)
    if "--write" in argv:
      STORE.write_text(json.dumps({v: {t: i.to_json() for t, i in e.items()}
                                   for v, e in store.items()}, indent=0) + "\n")
      print(f"wrote {STORE}")
    return 0
  print(readme_table())
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
