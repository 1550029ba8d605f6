"""PipeDream versus LocalSGD: loss against simulated time on the same S devices.

Each method at its best step size (and H for LocalSGD) from a small grid, chosen by the mean
final loss over seeds at the common time budget. Command: ``rpd reproduce --only
pd_vs_localsgd [--quick]``. Expected runtime with ``--quick`` from an empty compilation cache:
about 136 s of CPU time (``benchmarks/bench_reproduce.py --jobs 1``, 2-core CPU, 2026-12-02;
its batches run two at a time by default); about 7 min without (measured before the issue-21
changes; compiling the LM's programs dominates).
"""
from __future__ import annotations


def get_config(quick: bool = False) -> dict:
  """The PD-versus-LocalSGD configuration."""
  return dict(
      name="pd_vs_localsgd",  # results file pd_vs_localsgd.jsonl, figure name
      problems=[  # objectives; 'gammas' is each objective's step-size grid
          dict(label="quadratic, exact gradients", name="quadratic",  # no noise floor; mu
               options=dict(d=64, L=1.0, mu=1e-4, noise=0.0, seed=0),  # small: not solved
               gammas=[0.1, 0.3, 1.0, 1.5, 1.9] if quick else [0.03, 0.1, 0.3, 1.0, 1.5, 1.9]),
          dict(label="quadratic, noisy gradients", name="quadratic",  # sigma^2 d = 0.0064
               options=dict(d=64, L=1.0, mu=0.01, noise=0.01, seed=0),
               gammas=[0.03, 0.1, 0.3, 1.0, 1.5] if quick else [0.01, 0.03, 0.1, 0.3, 1.0, 1.5]),
          dict(label="logistic regression", name="logistic",  # synthetic, minibatch 64
               options=dict(n=1024, d=64, batch=64, seed=0),
               gammas=[0.03, 0.1, 0.3, 1.0, 3.0] if quick else [0.01, 0.03, 0.1, 0.3, 1.0, 3.0]),
          dict(label="character LM (Markov source)", name="charlm",  # f* = entropy rate
               options=(dict(hidden=16, n_chains=32, length=1024, n_eval=1024) if quick else
                        dict(hidden=16)),  # 16 layers of width 16: ~16k parameters
               gammas=[0.3, 1.0, 3.0] if quick else [0.1, 0.3, 1.0, 3.0],
               # optional per-objective overrides of 'stages' and 'H' (compiles dominate the
               # quick run: the LM's programs take ~5-10 s each to compile on 2 cores)
               **(dict(stages=[2, 16], H=[4]) if quick else {})),
          dict(label="transformer LM (bundled corpus)", name="transformer",  # f* unknown
               options=(dict(n_chars=50_000, T=16, d_model=16, heads=2, batch=8, n_eval=32)
                        if quick else dict(n_chars=100_000, T=32, d_model=32, heads=2,
                                           batch=8, n_eval=64)),
               gammas=[0.3, 1.0] if quick else [0.1, 0.3, 1.0, 3.0],
               **(dict(stages=[2], H=[4]) if quick else dict(stages=[2, 4, 8]))),
      ],
      stages=[2, 4, 8, 16],  # S = pipeline stages = LocalSGD workers = devices
      H=[1, 8] if quick else [1, 4, 16],  # LocalSGD local steps between averages
      seeds=[0] if quick else [0, 1],  # seeds (the verdict uses the mean over seeds)
      microbatches=1024 if quick else 4096,  # PipeDream microbatches; sets the time budget
      n_records=16,  # record points per run
      tie_rtol=0.05,  # excess losses closer than this (relative) are a tie
      tie_atol=1e-6,  # ... or both below this times max(1, |f*|) (float32 resolution)
      cost=dict(F=1.0, B=1.0, send_latency=0.0,  # rpd.simtime.CostModel fields
                allreduce_latency=1.0, bandwidth=float("inf"), jitter=0.0, seed=0),
  )
