"""theory/tightness.py: the exact stationary excess against a second exact recursion."""
import numpy as np
import pytest

from rpd.theory import lemma_exact, stability, tightness


@pytest.mark.parametrize("S, K", [(2, 3000), (4, 6000)])
def test_stationary_excess_equals_the_window_recursion(S, K):
  # tightness.excess sums scalar chains (rpd: own delays only, H = I); lemma_exact runs the
  # full d = S second-moment recursion with the PipeDream table: the limit must agree.
  gamma = 0.3 * stability.thresholds("rpd", S, "isotropic", 1.0)["mean_square_threshold"]
  m = lemma_exact.stale_moments(np.eye(S), None, np.eye(S), stability.delay_table(S), gamma,
                                np.zeros(S), K)
  assert abs(m["N"][-1] - m["N"][-200]) < 1e-10 * m["N"][-1]  # converged
  assert m["N"][-1] == pytest.approx(tightness.excess("rpd", S, gamma), rel=1e-8)


def test_mean_part_limit_is_below_the_exact_thresholds():
  m = tightness.measurements()
  iso = m["mean_part"]["isotropic"]
  assert all(a < b for a, b in zip(iso["inv_mu"], iso["exact_ms_rpd"]))
  r1 = m["mean_part"]["rank1"]
  assert all(a < b for a, b in zip(r1["inv_mu"], r1["exact_mean_rpd"]))
  # Stale coefficient: delay-free part a1 = L sigma2 / 2 exactly; pipedream a2 = S / 4.
  for rule in ("rpd", "pipedream"):
    assert m["stale"][rule]["a1_over_L_sigma2"] == pytest.approx([0.5] * 5, rel=1e-8)
  assert m["stale"]["pipedream"]["a2_over_L2_sigma2"] == pytest.approx(
      [s / 4 for s in m["S"]], rel=1e-5)
