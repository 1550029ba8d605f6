"""Exact stability thresholds (theory/stability.py) against independent references."""
import json
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from rpd.theory import moments, stability as st


@pytest.mark.parametrize("t", range(0, 7))
def test_levin_may_against_companion_eigenvalues(t):
  # m_{n+1} = m_n - a m_{n-t}: roots of z^{t+1} - z^t + a; stable iff all |z| < 1.
  def rho(a):
    coeffs = np.zeros(t + 2)
    coeffs[0], coeffs[1] = 1.0, -1.0
    coeffs[-1] += a
    return np.abs(np.roots(coeffs)).max()
  a = st.levin_may(t)
  assert rho(a * 0.999) < 1 < rho(a * 1.001)


def test_chain_equations_are_the_fixed_point_of_the_second_moment_map():
  d = st.chain_equations()
  p, c, g, r, t = d["symbols"]
  res = d["residual"]
  # X = T(X) on the Toeplitz form is exactly the coded system (row 0 divided by p).
  assert sp.simplify(res[0, 0] / p + d["coded"][0]) == 0
  for m in range(1, t + 1):
    assert sp.simplify(res[0, m] + d["coded"][m]) == 0
  for a in range(1, t + 1):
    for b in range(1, t + 1):
      assert sp.simplify(res[a, b]) == 0


def test_deterministic_chain_mean_square_equals_levin_may():
  for t in (1, 3, 8, 20):
    a = st.levin_may(t)
    assert st.chain_second_moment(t, 1.0, a * 0.999) is not None
    assert st.chain_second_moment(t, 1.0, a * 1.001) is None


@pytest.mark.parametrize("rule", ["rpd", "pipedream"])
def test_isotropic_excess_and_threshold_against_the_full_window_recursion(rule):
  # Independent path: the dense window second-moment recursion of theory/moments.py
  # (pipedream as a cyclic table: the table rule with the program's block order).
  S, L, sigma = 2, 1.0, 0.3
  ex = st.thresholds(rule, S, "isotropic", L)
  g = 0.5 * ex["mean_square_threshold"]
  exact = st.thresholds(rule, S, "isotropic", L, gamma=g, sigma=sigma)["stationary_excess"]
  if rule == "rpd":
    tr = moments.trajectory(L * np.eye(S), np.zeros(S), np.full(S, sigma), st.delay_table(S),
                            g, np.zeros(S), 3000)
    assert tr["N"][-1] == pytest.approx(exact, rel=1e-6)
    # noise-free second moment decays just below the threshold and grows just above
    ms = ex["mean_square_threshold"]
    lo = moments.trajectory(np.eye(S), np.zeros(S), np.zeros(S), st.delay_table(S),
                            ms * 0.97, np.ones(S), 4000)["N"]
    hi = moments.trajectory(np.eye(S), np.zeros(S), np.zeros(S), st.delay_table(S),
                            ms * 1.03, np.ones(S), 4000)["N"]
    assert lo[-1] < lo[2000] < 1 and hi[-1] > hi[2000] > 1
  else:
    # deterministic: simulate the cyclic recursion with many noise paths (brute force)
    rng = np.random.default_rng(0)
    order, tau = st.pipedream_order(S), st.delay_table(S)
    P, K = 4000, 400
    X = np.zeros((P, K + 1, S))
    acc = []
    for k in range(K):
      i = order[k % S]
      xhat = np.stack([X[:, max(0, k - tau[i, j]), j] for j in range(S)], 1)
      X[:, k + 1] = X[:, k]
      X[:, k + 1, i] -= g * (L * xhat[:, i] + sigma * rng.standard_normal(P))
      if k >= K // 2:
        acc.append(np.mean(np.sum((L * X[:, k + 1]) ** 2, 1)))
    mc = np.mean(acc)
    assert mc == pytest.approx(exact, rel=0.05)


def test_moment_recursion_matches_monte_carlo():
  rng = np.random.default_rng(1)
  H = rng.standard_normal((2, 2))
  H = H + H.T
  c, s = rng.standard_normal(2), np.array([0.5, 1.0])
  tau = np.array([[3, 2], [2, 1]])
  ex = moments.trajectory(H, c, s, tau, 0.1, np.array([1.0, -1.0]), 10)
  mc = moments.simulate(H, c, s, tau, 0.1, np.array([1.0, -1.0]), 10, 100000)
  for k in ("D", "G", "N"):
    np.testing.assert_allclose(ex[k], mc[k], rtol=0.03, atol=1e-3)


def test_thresholds_scale_like_one_over_S_and_ordering():
  for rule in ("rpd", "pipedream"):
    th = {S: st.thresholds(rule, S, "isotropic") for S in (8, 16, 32)}
    for S, e in th.items():
      assert e["mean_square_threshold"] <= e["mean_threshold"] * (1 + 1e-6)
      assert 1.4 < S * e["mean_square_threshold"] < 1.7
    slope = np.polyfit(np.log([8, 16, 32]),
                       np.log([th[S]["mean_square_threshold"] for S in (8, 16, 32)]), 1)[0]
    assert -1.1 < slope < -0.9


def test_rank1_small_S():
  for rule in ("rpd", "pipedream"):
    e = st.thresholds(rule, 3, "rank1")
    assert 0 < e["mean_threshold"] and e["mean_square_threshold"] is not None
    assert e["mean_square_threshold"] <= e["mean_threshold"] * (1 + 1e-4)
  with pytest.raises(ValueError, match="rank1"):
    st.thresholds("rpd", 40, "rank1")


def test_pipedream_exact_threshold_inside_measured_bracket():
  import jax
  jax.config.update("jax_enable_x64", True)
  ex = st.thresholds("pipedream", 4, "isotropic")
  m = st.measured_threshold("pipedream", 4, "isotropic", lo=0.2, hi=0.8, grid=8, rounds=3)
  a, b = m["bracket"]
  # deterministic linear recursion: the divergence threshold IS the mean threshold
  assert a * 0.995 <= ex["mean_threshold"] <= b * 1.005


def _cli(*argv):
  return subprocess.run([sys.executable, "-m", "rpd", "theory", "stability", *argv],
                        capture_output=True, text=True, timeout=300)


def test_cli_json_keys_strict():
  r = _cli("--stages", "3", "--rule", "pipedream", "--no-measure", "--json")
  assert r.returncode == 0, r.stderr
  out = json.loads(r.stdout, parse_constant=lambda c: pytest.fail(f"non-JSON {c}"))
  for k in ("mean_threshold", "mean_square_threshold", "gamma_max", "measured_threshold"):
    assert k in out
  assert set(out["gamma_max"]) == {"cs", "martingale", "block"}
  assert out["measured_threshold"] is None  # --no-measure
  assert out["excess"]["exact"] > 0


@pytest.mark.parametrize("argv, needle", [
    (["--stages", "0"], "0"),
    (["--rule", "bogus"], "bogus"),
    (["--problem", "rank1", "--stages", "50", "--no-measure"], "50"),
    (["--gamma", "-1", "--no-measure"], "-1"),
    (["--sigma", "nan", "--no-measure"], "nan"),
])
def test_cli_bad_input_one_line_exit_2(argv, needle):
  r = _cli(*argv)
  assert r.returncode == 2, r.stderr
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_stability_experiment_resumes_and_reports_exponents(tmp_path, monkeypatch):
  from rpd.experiments import stability as exp
  from rpd.experiments.common import ResultsStore
  from rpd.experiments.configs.stability import get_config
  cfg = dict(get_config(True), stages=[2, 4], measure_stages=[2], excess_stages=[],
             measure_grid=4, measure_K_rounds=4)
  path = str(tmp_path / "stability.jsonl")
  released = []  # after each row, compiled programs are released if many (a full run's)
  monkeypatch.setattr(exp, "release_compiled_programs", lambda: released.append(1))
  assert exp.run(cfg, ResultsStore(path), progress=False) == 2 * 2 + 2
  assert len(released) == 2 * 2 + 2
  assert exp.run(cfg, ResultsStore(path), progress=False) == 0  # finished work is skipped
  res = exp.plot(cfg, ResultsStore(path), str(tmp_path))
  assert "S^-" in res["finding"] and res["fits"]["gamma_max cs"] < -1.5
  assert any(f.endswith(".png") for f in res["figures"])
