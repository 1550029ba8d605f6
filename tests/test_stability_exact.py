"""theory/stability.py: the reductions behind the exact thresholds, against brute force.

Complements tests/test_stability.py: the quotient by the fixed subspace (rank1), the scalar
Toeplitz chains against the dense window Kronecker system, the engine's realized PipeDream
delays against the model, and measured brackets with a generic start.
"""
import numpy as np
import pytest

from rpd.theory import moments, stability as st


@pytest.mark.parametrize("rule", ["rpd", "pipedream"])
@pytest.mark.parametrize("S", [2, 3])
def test_scalar_chains_equal_the_dense_window_system(rule, S):
  # isotropic: the (t + 1)-unknown Toeplitz chains against the dense S (t + 1) window system
  # (Kronecker solve for rpd, discrete Lyapunov over one period for pipedream).
  H = st.hessian("isotropic", S)
  ex = st.thresholds(rule, S, "isotropic")
  g, sigma = 0.4 * ex["mean_square_threshold"], 0.3
  X = st._dense_second_moment(H, rule, g, sigma)
  dense = float(np.trace(H @ H @ X[:S, :S]))
  chain = st.thresholds(rule, S, "isotropic", gamma=g, sigma=sigma)["stationary_excess"]
  assert dense == pytest.approx(chain, rel=1e-8)
  lo, hi = st._bisect(lambda x: st._dense_mean_stable(H, rule, x), 0.1, 2.0)
  assert lo <= ex["mean_threshold"] * (1 + 1e-5) and hi >= ex["mean_threshold"] * (1 - 1e-5)
  if rule == "rpd":
    lo, hi = st._bisect(lambda x: st._dense_second_moment(H, rule, x) is not None, 0.1, 2.0)
    assert lo <= ex["mean_square_threshold"] * (1 + 1e-5)
    assert hi >= ex["mean_square_threshold"] * (1 - 1e-5)


def test_rank1_needs_the_quotient_and_the_quotient_is_right():
  # Unreduced, the rank1 window maps fix {(v, ..., v): Hv = 0}: rho = 1 at every gamma.
  S = 2
  H = st.hessian("rank1", S)
  As, _ = st.window_maps(H, 0.1, "rpd")
  assert st._spectral_radius(sum(As) / S) == pytest.approx(1.0, abs=1e-9)
  ex = st.thresholds("rpd", S, "rank1")
  ms = ex["mean_square_threshold"]
  # Independent: the augmented-window second-moment recursion of theory/moments.py (full
  # space, no quotient), noise-free, from a generic start: E||grad f||^2 decays below the
  # mean-square threshold and grows above it.
  x0 = np.array([0.7, -1.3])
  run = lambda g: moments.trajectory(H, np.zeros(S), np.zeros(S), st.delay_table(S), g, x0,
                                     3000)["N"]
  below, above = run(0.97 * ms), run(1.03 * ms)
  assert below[-1] < below[1500] < below[0]
  assert above[-1] > above[1500] > above[0]


def test_rank1_pipedream_threshold_against_numpy_replay():
  # Deterministic cyclic recursion replayed in NumPy with the table delays.
  S = 3
  H = st.hessian("rank1", S)
  thr = st.thresholds("pipedream", S, "rank1")["mean_threshold"]
  tau, order = st.delay_table(S), st.pipedream_order(S)

  def grad_sq(g, K=3000):
    hist = [np.array([0.7, -1.3, 0.4])]
    for k in range(K):
      i = order[k % S]
      ehat = np.array([hist[max(0, k - tau[i, j])][j] for j in range(S)])
      e = hist[-1].copy()
      e[i] -= g * H[i] @ ehat
      hist.append(e)
    return [float(np.sum((H @ h) ** 2)) for h in hist]

  below, above = grad_sq(0.98 * thr), grad_sq(1.02 * thr)
  assert max(below[-300:]) < max(below[1200:1500])
  assert max(above[-300:]) > max(above[1200:1500])


def test_engine_pipedream_delays_are_the_model():
  import jax
  jax.config.update("jax_enable_x64", True)
  from rpd.engine import run
  from rpd.rules import get_rule
  S = 3
  r = run(st.engine_problem("rank1", S), get_rule("pipedream", S), gamma=0.1, K=40 * S,
          key=jax.random.key(0), instrument=True)
  blocks, taus = np.asarray(r.realized["block"]), np.asarray(r.realized["tau"])
  order, table = st.pipedream_order(S), st.delay_table(S)
  tail = range(len(blocks) - 4 * S, len(blocks))  # steady state
  assert [int(blocks[k]) for k in tail] == [order[k % S] for k in tail]
  for k in tail:
    np.testing.assert_array_equal(taus[k], table[blocks[k]])


def test_fitted_rate_criterion_ignores_the_phase_of_a_slow_oscillation():
  k = np.arange(65)
  decaying = 0.999 ** (16 * k) * (1.0 + 0.9 * np.cos(1.1 * k))
  growing = 1.001 ** (16 * k) * (1.0 + 0.9 * np.cos(1.6 * k))
  assert decaying[-1] > decaying[32]  # critical_gamma's end-point test: "unstable"
  assert growing[-1] < growing[32]  # ... and "stable"
  assert st._stable_run(decaying, False) and not st._stable_run(growing, False)
  assert not st._stable_run(decaying, True)


@pytest.mark.parametrize("problem, S", [("rank1", 2), ("isotropic", 3)])
def test_measured_brackets(problem, S):
  import jax
  jax.config.update("jax_enable_x64", True)
  r_pd = st.report("pipedream", S, problem, gamma=None, measure=False)
  m = st.measured_threshold("pipedream", S, problem, lo=0.7 * r_pd["mean_threshold"],
                            hi=1.4 * r_pd["mean_threshold"], grid=8, rounds=2, K_rounds=32,
                            min_mb=1024)
  a, b = m["bracket"]
  assert a <= r_pd["mean_threshold"] <= b  # deterministic: divergence = mean threshold
  if problem == "isotropic":
    # rpd, one path per gamma: the pathwise threshold is at least the mean-square one
    ex = st.thresholds("rpd", S, problem)
    m = st.measured_threshold("rpd", S, problem, lo=0.7 * ex["mean_square_threshold"],
                              hi=1.4 * ex["mean_threshold"], grid=8, rounds=2, K_rounds=32,
                              min_mb=1024)
    assert m["bracket"][0] >= ex["mean_square_threshold"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_run_stuck_at_rounding_level_is_stable(dtype):
  # a stable run that reached its dtype's rounding floor: flat, the fitted slope is ~0
  eps = np.finfo(dtype).eps
  g = np.concatenate([0.5 * 0.8 ** np.arange(100), np.full(157, 0.3 * eps ** 2)])
  g[-3:] *= 1.0001
  assert st._stable_run(g.astype(dtype), False)
