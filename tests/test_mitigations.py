"""The mitigation zoo (``adapt``, ``pipemare``, ``2bw``) against independent NumPy references.

Dense quadratic ``f = 1/2 x'Ax - b'x``, exact gradients, float64 references written from the
rules' docstrings: PipeDream from the schedule's timeline (``replay_numpy.timeline``: reads at
F start, updates at the end of B; delays and horizons counted on that timeline), iteration
rules from a plain loop over the iterate history. The engine runs in float32.
"""
import numpy as np
import pytest
import jax

from rpd.engine import run, select_key
from rpd.problems import get_problem
from rpd.rules import get_rule

from replay_numpy import timeline

D = 2


def _problem(S):
  prob = get_problem("quadratic", S, d=S * D, noise=0.0, seed=S, L=1.0, mu=0.1)
  A, b = np.asarray(prob.A, np.float64), np.asarray(prob.b, np.float64)
  assert A.ndim == 2
  return prob, A, b, np.random.default_rng(S).standard_normal((S, D))


def pipedream_replay(S, K, gamma, A, bvec, x0, scale=None, ema=None):
  """PipeDream on the timeline; ``scale(tau_row, c)`` multiplies the gradient of the update
  (``tau_row``: global updates between m's read of each block and this update; ``c``: updates
  so far); ``ema = d`` reads ``stash + h * delta`` with the EMA ``delta`` of block updates."""
  m0 = 2 * S
  events = timeline("pipedream", S, m0 + K // S + 3 * S)
  start = next(p for p, (kd, m, _) in enumerate(events) if kd == "U" and m == m0)
  n_upd, count, read_n, read_c, h = 0, np.zeros(S, int), {}, {}, {}
  tau = {}
  for kd, m, b in events:  # delays and horizons counted on the whole timeline
    if kd == "R":
      read_n[(m, b)], read_c[(m, b)] = n_upd, count[b]
    else:
      tau[(m, b)] = np.array([n_upd - read_n[(m, j)] for j in range(S)])
      h[b] = count[b] - read_c[(m, b)]
      count[b] += 1
      n_upd += 1
  h = np.array([h[b] for b in range(S)])
  x = np.array(x0, np.float64)
  delta = np.zeros_like(x)
  stash, grad = {}, {}
  c = 0
  for kd, m, b in events[start:]:
    if c == K:
      break
    if kd == "R":
      stash.setdefault(m, np.array(x0, np.float64))[b] = x[b]
      continue
    if m not in grad:
      p = stash.get(m, np.array(x0, np.float64)).copy()
      if ema is not None:
        p = p + h[:, None] * delta
      grad[m] = (A @ p.reshape(-1) - bvec).reshape(S, D)
    g = grad[m][b] * (scale(tau[(m, b)], c) if scale else 1.0)
    new = x[b] - gamma * g
    if ema is not None:
      delta[b] = ema * delta[b] + (1 - ema) * (new - x[b])
    x[b] = new
    c += 1
  return x


def _engine(spec, S, K, gamma, prob, x0):
  return run(prob, get_rule(spec, S), gamma=gamma, K=K, key=jax.random.key(0),
             x0=x0).x_SxD


@pytest.mark.parametrize("S", [2, 4])
@pytest.mark.parametrize("mode", ["1p", "inv"])
def test_adapt_pipedream_equals_numpy(S, mode):
  prob, A, b, x0 = _problem(S)
  K, gamma = 3 * S * S, 0.4
  den = (lambda t: 1 + t) if mode == "1p" else (lambda t: max(t, 1))
  ref = pipedream_replay(S, K, gamma, A, b, x0, scale=lambda tr, c: 1 / den(tr.max() // S))
  out = _engine(f"adapt:{mode}:pipedream", S, K, gamma, prob, x0)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  plain = pipedream_replay(S, K, gamma, A, b, x0)
  if mode == "1p" or S > 2:  # inv at S = 2: every delay is 1 gradient, gamma / 1 = gamma
    assert np.max(np.abs(ref - plain)) > 1e-2  # the scaling changes the run


@pytest.mark.parametrize("S", [2, 4])
def test_pipemare_pipedream_equals_numpy(S):
  prob, A, b, x0 = _problem(S)
  K, gamma, W = 3 * S * S, 0.3, 2 * S * S
  ref = pipedream_replay(S, K, gamma, A, b, x0, ema=0.5,
                         scale=lambda tr, c: (1 + tr.max() // S) ** -(1 - min(c / W, 1)))
  out = _engine(f"pipemare:{W}:pipedream", S, K, gamma, prob, x0)
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  no_t1 = pipedream_replay(S, K, gamma, A, b, x0, ema=0.5)
  assert np.max(np.abs(ref - no_t1)) > 1e-2
  np.testing.assert_allclose(_engine("pipemare:pipedream", S, K, gamma, prob, x0), no_t1,
                             rtol=1e-5, atol=1e-6)


def iteration_replay(rule, K, gamma, A, bvec, x0, scale=None, ema=None, key=0):
  """Iteration rule from its ``select`` (block, delays) and the iterate history (float64)."""
  S = x0.shape[0]
  hist = [np.array(x0, np.float64)]
  delta = np.zeros_like(hist[0])
  count = np.zeros(S, int)
  counts = [count.copy()]  # updates of each block before iteration t
  state = rule.init_state()
  for k in range(K):
    i, tau, state = rule.select(state, select_key(jax.random.key(key), k), np.int32(k))
    i, tau = int(i), np.asarray(tau)
    x = hist[-1]
    p = np.stack([hist[max(k - tau[j], 0)][j] for j in range(S)])
    if ema is not None:
      p = p + (count - np.array([counts[max(k - tau[j], 0)][j] for j in range(S)]))[:, None] * delta
    g = (A @ p.reshape(-1) - bvec).reshape(S, D)[i] * (scale(tau, k) if scale else 1.0)
    new = x.copy()
    new[i] = x[i] - gamma * g
    if ema is not None:
      delta[i] = ema * delta[i] + (1 - ema) * (new[i] - x[i])
    count[i] += 1
    hist.append(new)
    counts.append(count.copy())
  return hist[-1]


@pytest.mark.parametrize("spec", ["adapt:rpd", "adapt:inv:constant:3", "pipemare:30:rpd"])
def test_iteration_mitigations_equal_numpy(spec):
  S, K, gamma = 4, 60, 0.5
  prob, A, b, x0 = _problem(S)
  rule = get_rule(spec, S)
  base = get_rule(spec.split(":", 2 if spec.split(":")[1] in ("inv", "30") else 1)[-1], S)
  if spec.startswith("pipemare"):
    kw = dict(ema=0.5, scale=lambda t, c: (1 + t.max()) ** -(1 - min(c / 30, 1)))
  elif "inv" in spec:
    kw = dict(scale=lambda t, c: 1 / max(t.max(), 1))
  else:
    kw = dict(scale=lambda t, c: 1 / (1 + t.max()))
  ref = iteration_replay(base, K, gamma, A, b, x0, **kw)
  out = run(prob, rule, gamma=gamma, K=K, key=jax.random.key(0), x0=x0).x_SxD
  np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
  assert np.max(np.abs(ref - iteration_replay(base, K, gamma, A, b, x0))) > 1e-2


@pytest.mark.parametrize("S", [1, 3, 4])
@pytest.mark.parametrize("lag", [1, 2])
def test_2bw_equals_numpy(S, lag):
  """Round ``r``: ``x^{(r+1)S} = x^{rS} - gamma grad f(x^{(r-lag)S})`` block by block."""
  prob, A, b, x0 = _problem(S)
  K, gamma = 8 * S, 0.4
  versions = [np.array(x0, np.float64)]  # x^{rS}
  x = versions[0].copy()
  for r in range(K // S):
    p = versions[max(r - lag, 0)]
    g = (A @ p.reshape(-1) - b).reshape(S, D)
    for i in range(S):
      x[i] = x[i] - gamma * g[i]
    versions.append(x.copy())
  out = _engine("2bw" if lag == 1 else f"2bw:{lag}", S, K, gamma, prob, x0)
  np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)
  assert np.max(np.abs(x - x0)) > 1e-2


def test_bad_specs_raise_one_line():
  for spec in ["2bw:x", "2bw:-1", "adapt:nope", "pipemare:5:nope", "adapt:predict:nope"]:
    with pytest.raises(ValueError):
      get_rule(spec, 4)


def test_mitigation_experiment_tuned_finding_from_data_and_resumable(tmp_path):
  """Each rule at its own tuned gamma: the tuned gamma and the loss it reaches, recomputed
  here from the stored runs, are the table's, and the finding's ratio is the table's."""
  from rpd.experiments import mitigations
  from rpd.experiments.common import ResultsStore
  from rpd.experiments.configs.mitigations import get_config
  cfg = dict(get_config(quick=True), rules=["pipedream", "2bw"], stages=[2],
             gammas=[0.1, 0.3, 1.0, 3.0], microbatches=8, seeds=[0])
  cfg["problems"] = cfg["problems"][:1]
  path = str(tmp_path / "m.jsonl")
  assert mitigations.run(cfg, ResultsStore(path), progress=False) == 2 * 4
  res = mitigations.plot(cfg, ResultsStore(path), str(tmp_path))
  row = {(r["rule"], r["S"]): r for r in res["table"]}
  for rule in cfg["rules"]:
    runs = ResultsStore(path).select(rule=rule, S=2)
    final = {r["config"]["gamma"]: (np.inf if r["result"]["diverged"] else
                                    r["result"]["loss"][-1] - r["result"]["f_star"])
             for r in runs}
    best = min(final, key=final.get)
    assert row[(rule, 2)]["tuned_gamma"] == best
    assert row[(rule, 2)]["final"] == pytest.approx(final[best], rel=1e-12)
  ratio = row[("2bw", 2)]["final"] / row[("pipedream", 2)]["final"]
  assert f"the loss reached is {ratio:.2f}x the base's" in res["finding"]
  assert res["finding"].startswith("2bw vs pipedream (quadratic, S=2")
  assert mitigations.run(cfg, ResultsStore(path), progress=False) == 0  # rerun skips
