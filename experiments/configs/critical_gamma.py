"""Critical step size: the largest stable gamma on a quadratic versus S.

Vectorised bisection: a geometric grid of gammas runs as one vmapped sweep, then finer grids
between the largest stable and the smallest unstable gamma. Stable = never diverged and
||grad f(x^K)||^2 below its values at 0 and K/2 (exact gradients: an unstable mode grows
without bound). Command: ``rpd reproduce --only critical_gamma [--quick]``. Expected
runtime with ``--quick`` from an empty compilation cache: about 30 s of CPU time
(``benchmarks/bench_reproduce.py --jobs 1``, 2-core CPU, 2026-12-02); about 3.5 min without
(measured before the issue-21 changes).
"""
from __future__ import annotations


def get_config(quick: bool = False) -> dict:
  """The critical-step-size configuration."""
  return dict(
      name="critical_gamma",  # results file critical_gamma.jsonl, figure name
      problem=dict(label="quadratic, exact gradients", name="quadratic",  # noise 0
                   options=dict(d=64, L=1.0, mu=0.1, noise=0.0, seed=0)),
      rules=["pipedream", "rpd"],  # delay rules
      stages=[1, 2, 4, 8, 16] if quick else [1, 2, 4, 8, 16, 32],  # S values
      gamma_lo=1e-3, gamma_hi=4.0,  # bracket of the first grid (gamma_hi > 2 / L diverges)
      grid=12 if quick else 16,  # gammas per grid (one vmapped sweep each)
      rounds=2 if quick else 3,  # grids: the first covers the bracket, each next refines
      K_microbatches=64 if quick else 128,  # K = this many times S * (tau_max // S + 1)
      seed=0,  # seed (block choices of rpd; pipedream is deterministic with exact gradients)
  )
