"""The engine's iterates equal an independent NumPy replay from the schedule's timeline.

``tests/replay_numpy.py`` replays weight-stashing pipelines from ``rpd.schedules``' action
lists and timing pass (reads at F start, updates at the end of B/W, exact gradients on a
dense quadratic, float64); the engine must produce the same iterate after every record, for
``pipedream``, every stashing ``schedule:NAME`` and the mitigations composed on them, in the
regrouped (default) and the one-event-at-a-time (instrumented) program paths.
"""
import numpy as np
import pytest
import jax

from rpd.engine import run
from rpd.problems import get_problem
from rpd.rules import get_rule
from rpd.schedules import SCHEDULES

from replay_numpy import replay

STASHING = sorted(n for n, s in SCHEDULES.items() if (s.semantics.asynchronous and s.semantics.stashes))
SPECS = ["pipedream"] + [f"schedule:{n}" for n in STASHING]


def _check(spec, S, schedule, instrument=False, K=None, gamma=0.15, **mit):
  D = 2
  prob = get_problem("quadratic", S, d=S * D, noise=0.0, seed=S, L=1.0, mu=0.1)
  A, b = np.asarray(prob.A, np.float64), np.asarray(prob.b, np.float64)
  assert A.ndim == 2  # dense
  rng = np.random.default_rng(S)
  x0 = rng.standard_normal((S, D))
  K = K or 3 * S * S + 2 * S
  res = run(prob, get_rule(spec, S), gamma=gamma, K=K, key=jax.random.key(0), x0=x0,
            record_every=S, instrument=instrument)
  x_ref, hist = replay(schedule, S, K, gamma, A, b, x0, **mit)
  np.testing.assert_allclose(res.x_SxD, x_ref, rtol=1e-5, atol=1e-6)
  f = [0.5 * h.reshape(-1) @ A @ h.reshape(-1) - b @ h.reshape(-1) for h in hist[::S]]
  np.testing.assert_allclose(res.metrics["loss"], f, rtol=1e-5, atol=1e-6)
  assert np.max(np.abs(x_ref - x0)) > 1e-2  # the run moved: the comparison says something


def test_every_stashing_schedule_is_replayed():
  assert STASHING == ["pipedream"]  # if a stashing schedule is added it joins SPECS


@pytest.mark.parametrize("S", [2, 3, 4, 8])
@pytest.mark.parametrize("spec", SPECS)
def test_engine_iterates_equal_the_numpy_replay(spec, S):
  _check(spec, S, spec.split(":")[-1])


@pytest.mark.parametrize("S", [2, 3, 4, 8])
def test_instrumented_path_equals_the_numpy_replay(S):
  _check("pipedream", S, "pipedream", instrument=True)


@pytest.mark.parametrize("S", [2, 3, 4, 8])
def test_weight_prediction_equals_the_numpy_replay(S):
  _check("predict:pipedream", S, "pipedream", predict=True)


@pytest.mark.parametrize("S", [2, 3, 4, 8])
def test_delay_compensation_equals_the_numpy_replay(S):
  _check("dc:0.5:pipedream", S, "pipedream", lam=0.5, gamma=0.3)


def test_replay_tells_the_rules_apart():
  """The replay is sharp: plain pipedream is not its own weight-predicted run."""
  S = 4
  with pytest.raises(AssertionError):
    _check("pipedream", S, "pipedream", predict=True)


@pytest.mark.parametrize("spec", ["predict:rpd:uniform:6", "dc:0.5:rpd:uniform:6"])
def test_iteration_rule_mitigations_equal_a_direct_replay(spec):
  """Iteration rules: x_hat_j = x_j^{k - tau_kj} from the full history; weight prediction
  adds h_j v_j (h_j: updates of j in iterations [k - tau_kj, k), v_j: j's last update);
  DC-ASGD corrects block i_k's gradient by lam g g (x_i - x_hat_i)."""
  S, K, gamma, lam = 4, 80, 0.2, 0.5
  prob = get_problem("quadratic", S, d=8, noise=0.0, seed=0)
  res = run(prob, get_rule(spec, S), gamma=gamma, K=K, key=jax.random.key(7), instrument=True)
  A, b = np.asarray(prob.A), np.asarray(prob.b)
  hist, blocks = [np.zeros((S, 2))], []
  v = np.zeros((S, 2))
  for k in range(K):
    i, tau = res.realized["block"][k], res.realized["tau"][k]
    xhat = np.stack([hist[max(k - tau[j], 0)][j] for j in range(S)])
    if spec.startswith("predict"):
      h = np.array([sum(1 for t in range(max(k - tau[j], 0), k) if blocks[t] == j)
                    for j in range(S)])
      xhat = xhat + h[:, None] * v
    g = (A @ xhat.reshape(-1) - b).reshape(S, 2)[i]
    x = hist[-1].copy()
    if spec.startswith("dc"):
      g = g + lam * g * g * (x[i] - xhat[i])
    v[i] = -gamma * g
    x[i] -= gamma * g
    hist.append(x)
    blocks.append(i)
  np.testing.assert_allclose(res.x_SxD, hist[-1], rtol=0, atol=1e-12)
  plain = run(prob, get_rule("rpd:uniform:6", S), gamma=gamma, K=K, key=jax.random.key(7))
  assert np.max(np.abs(hist[-1] - plain.x_SxD)) > 1e-6  # the mitigation changed the run
