"""Which mitigation trains faster? Every rule at its own tuned step size, against S.

For each problem, rule (the bases ``pipedream``/``rpd`` and the mitigations on them) and S:
one vmapped sweep over the step-size grid (and seeds), K = ``microbatches * S`` block
updates; the tuned gamma is the grid point with the lowest final loss. Reported: the loss
reached after K (excess over f* where known) at the tuned gamma, microbatches to a target
(``target_frac`` of the largest decrease any rule reaches at that S), and, as a secondary
panel, the largest stable nominal gamma of the grid with ``adapt``'s effective step.
Command: ``rpd reproduce --only mitigations [--quick]``. Expected runtime (quick, 2 cores,
empty compilation cache): about 24 s of CPU (``benchmarks/bench_reproduce.py --jobs 1``,
2026-12-02), most of it compiling one program per (problem, rule, S); the quick run
leaves the transformer out (each of its programs takes ~23 s to compile).
"""
from __future__ import annotations


def get_config(quick: bool = False) -> dict:
  """The mitigation-comparison configuration (tuned step sizes)."""
  return dict(
      name="mitigations",  # results file mitigations.jsonl, figure name
      problems=[  # stochastic gradients on every problem
          dict(label="quadratic, noisy gradients", name="quadratic",
               options=dict(d=32, L=1.0, mu=0.05, noise=0.01, seed=0)),
          dict(label="logistic regression, minibatch 32", name="logistic",
               options=dict(n=256, d=32, batch=32, seed=0),
               **(dict(stages=[2]) if quick else {})),  # per-problem override of 'stages'
      ] + ([] if quick else [  # the transformer's programs take ~23 s each to compile on 2
          # cores (measured), so it is in the full run only
          dict(label="transformer LM (bundled corpus)", name="transformer",  # f* unknown
               options=dict(n_chars=50_000, T=16, d_model=16, heads=2, batch=8, n_eval=32),
               stages=[2, 4]),
      ]),
      # base rules first; each mitigation is compared with its base (base_of)
      rules=["pipedream", "adapt:pipedream", "pipemare:pipedream", "2bw"]
      + ([] if quick else ["rpd", "adapt:rpd", "predict:pipedream", "dc:pipedream",
                           "pipemare:64:pipedream"]),
      base_of={"adapt:pipedream": "pipedream", "pipemare:pipedream": "pipedream",
               "2bw": "pipedream", "adapt:rpd": "rpd", "predict:pipedream": "pipedream",
               "dc:pipedream": "pipedream", "pipemare:64:pipedream": "pipedream"},
      stages=[2, 4] if quick else [2, 4, 8],  # S values
      gammas=([0.03, 0.1, 0.3, 1.0, 3.0] if quick else
              [0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0]),  # step-size grid
      seeds=[0] if quick else [0, 1],  # seeds (the mean over seeds is tuned)
      microbatches=32 if quick else 256,  # K = microbatches * S block updates per run
      n_records=8,  # record points per run (microbatches to target are read at them)
      target_frac=0.8,  # target: this fraction of the largest decrease reached at that S
      tie_rtol=0.05,  # relative differences below this are "no change"
  )
