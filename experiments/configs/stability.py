"""How stale is PipeDream, from both sides: exact thresholds and stale excess against S.

Exact (theory/stability.py, no sampling) mean and mean-square stability thresholds of
pipedream and rpd on the isotropic quadratic, the theorem's gamma_max of every variant, the
measured divergence threshold (engine bisection), and the stationary excess
lim E||grad f||^2 at a fixed gamma (exact, measured, and each bound's stale term). Command:
``rpd reproduce --only stability [--quick]``. Expected runtime on a 2-core CPU (measured):
about 17 s of CPU with ``--quick`` from an empty compilation cache (2026-12-02), about 2 min
without (measured earlier).
"""
from __future__ import annotations


def get_config(quick: bool = False) -> dict:
  """The stability configuration."""
  return dict(
      name="stability",  # results file stability.jsonl, figure name
      problem="isotropic",  # H = L I, one coordinate per block (theory/stability.py)
      L=1.0,  # lambda_max(H)
      rules=["pipedream", "rpd"],  # delay rules compared
      stages=[2, 4, 8, 16] if quick else [2, 4, 8, 16, 32],  # S values
      measure_stages=[4, 8] if quick else [2, 4, 8, 16, 32],  # S with a measured threshold
      measure_grid=8 if quick else 12,  # gammas per bisection round (one vmapped sweep)
      measure_rounds=3,  # bisection rounds of the measured threshold
      measure_K_rounds=32 if quick else 64,  # K = this many times S (tau_max // S + 1)
      gamma_excess=0.02,  # fixed step size of the excess panel (0.4 x the S = 32 mean-square threshold)
      sigma=0.1,  # per-coordinate gradient noise of the excess panel (sigma2 = S sigma^2)
      excess_seeds=2 if quick else 4,  # seeds of the measured excess
      excess_K_rounds=32 if quick else 128,  # K of the measured excess, as measure_K_rounds
      excess_stages=[4] if quick else [2, 4, 8, 16],  # S with a measured excess
  )
