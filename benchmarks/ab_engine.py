"""A/B helper: pipedream vs plain scan per microbatch (diagonal quadratic d=2^16 at the given S,
and logistic d=4096 at the last S). Run once per code tree: PYTHONPATH=<tree> python
benchmarks/ab_engine.py 4,16 (see BENCHMARKS.md, "Engine before and after the rule protocol")."""
import sys, time, json
import numpy as np, jax, jax.numpy as jnp
sys.path.insert(0, "benchmarks")
from bench_engine import marginal, engine, plain_scan
from rpd.problems import get_problem
from rpd.rules import get_rule
out = {}
for S in tuple(int(a) for a in sys.argv[1].split(",")):
  prob = get_problem("quadratic", S, d=2 ** 16, diagonal=True, noise=0.1, dtype=jnp.float32)
  c = marginal(lambda n: plain_scan(prob, 0.01, n), 64, 256, 5)[0]
  b = marginal(lambda n: engine(prob, get_rule("pipedream", S), 0.01, S * n), 64, 256, 5)[0]
  out[f"quad S={S}"] = (b * 1e6, c * 1e6, b / c)
S = int(sys.argv[1].split(",")[-1])
prob = get_problem("logistic", S, n=2048, d=4096, batch=64, seed=0, dtype=jnp.float32)
c = marginal(lambda n: plain_scan(prob, 0.01, n), 64, 256, 5)[0]
b = marginal(lambda n: engine(prob, get_rule("pipedream", S), 0.01, S * n), 64, 256, 5)[0]
out["logistic S=64"] = (b * 1e6, c * 1e6, b / c)
print(json.dumps(out))
