"""Stage sweep: stale-read errors versus the number of stages S, at a fixed step size.

Command: ``rpd reproduce --only stage_sweep [--quick]`` (figures ``stage_sweep.*`` and, from
the same runs, ``tuned_rate.*``). Expected runtime with ``--quick`` from an empty compilation
cache: about 58 s of CPU time (``benchmarks/bench_reproduce.py --jobs 1``, 2-core CPU,
2026-12-02); about 2.5 min without (measured before the issue-21 changes).
"""
from __future__ import annotations


def get_config(quick: bool = False) -> dict:
  """The stage-sweep configuration (``quick``: fewer stages, gammas, seeds, iterations)."""
  return dict(
      name="stage_sweep",  # experiment name: results file stage_sweep.jsonl, figure names
      problems=[  # objective variants, each run with every rule, S, gamma and seed
          dict(label="quadratic, exact gradients", name="quadratic",  # noise 0: drift only
               options=dict(d=64, L=1.0, mu=0.01, noise=0.0, seed=0)),
          dict(label="quadratic, noisy gradients", name="quadratic",  # sigma^2 d = 0.0064
               options=dict(d=64, L=1.0, mu=0.01, noise=0.01, seed=0)),
          dict(label="logistic regression, minibatch 64", name="logistic",  # synthetic
               options=dict(n=1024, d=64, batch=64, seed=0)),
      ],
      rules=["pipedream", "rpd"],  # engine delay rules compared
      stages=[2, 4, 8, 16] if quick else [1, 2, 4, 8, 16, 32],  # S values (S <= d)
      gammas=([0.01, 0.1, 0.3, 1.0] if quick else  # step sizes (large ones diverge at large S)
              [0.003, 0.01, 0.03, 0.1, 0.3, 1.0]),
      gamma_fit=0.01,  # fixed step size at which the exponent in S is fitted (in gammas)
      seeds=[0, 1, 2] if quick else [0, 1, 2, 3, 4],  # seeds: t-interval of the exponents
      K=2048 if quick else 8192,  # iterations (block updates); a multiple of every S
      n_records=16,  # record points (K / n_records must be a multiple of every S)
      early=(1, 2),  # early window: records 1..2, iterations [K/16, K/8); reads older than
                     # iteration 0 see x0 and tau_max(S) = 248 (S=16), 1008 (S=32), so for the
                     # largest S the window still contains such reads

      late=(8, 16),  # late window: records 8..16, the second half of the run
  )
