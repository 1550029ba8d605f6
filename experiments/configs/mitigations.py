"""Which mitigation tames the staleness? Largest stable step size and stale-read error vs S.

For each mitigation rule and its base (``pipedream`` or ``rpd``): the critical step size by
the vectorised bisection of :mod:`rpd.experiments.critical_gamma` (same stability test) and
the stale-read error ``||x_hat - x||^2`` at one fixed step size, on a quadratic and on a
full-batch logistic regression (exact gradients on both, so stability is well defined).
Command: ``rpd reproduce --only mitigations [--quick]``.
"""
from __future__ import annotations


def get_config(quick: bool = False) -> dict:
  """The mitigation-comparison configuration."""
  return dict(
      name="mitigations",  # results file mitigations.jsonl, figure name
      problems=[  # each with exact gradients (noise 0 / full batch)
          dict(label="quadratic, exact gradients", name="quadratic",
               options=dict(d=32, L=1.0, mu=0.1, noise=0.0, seed=0)),
          dict(label="logistic regression, full batch", name="logistic",
               options=dict(n=256, d=32, batch=256, seed=0)),
      ],
      # base rules first; each mitigation is compared with the base named in BASE_OF
      rules=["pipedream", "rpd", "adapt:pipedream", "adapt:rpd", "pipemare:pipedream", "2bw"]
      + ([] if quick else ["predict:pipedream", "adapt:inv:pipedream", "pipemare:64:pipedream"]),
      stages=[2, 4, 8] if quick else [2, 4, 8, 16],  # S values (the exponent is fitted on them)
      gamma_lo=0.02, gamma_hi=64.0,  # bracket of the first bisection grid; gamma_lo is also
      # the fixed step size of the stale-read error (read from the bisection's own runs)
      grid=8 if quick else 16,  # gammas per bisection grid (one vmapped sweep each)
      rounds=2 if quick else 3,  # bisection grids: the first covers the bracket, each next refines
      K_microbatches=8 if quick else 64,  # K = this many times S * (tau_max // S + 1)
      seed=0,  # seed (block choices of rpd; the rest is deterministic with exact gradients)
  )
