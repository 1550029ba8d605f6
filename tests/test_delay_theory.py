"""The sympy closed form of the PipeDream delay against the simulated schedule."""
from fractions import Fraction

import numpy as np
import pytest
import sympy as sp

from rpd.schedules import get_schedule
from rpd.theory import delay


@pytest.fixture(scope="module")
def simulated():
  pd = get_schedule("pipedream")
  return {S: pd.delay_table(S) for S in range(1, 65)}


def test_steady_state_recurrences_are_consistent():
  assert delay.steady_state_timing()["consistent"]


def test_closed_form_equals_simulation_for_every_S_up_to_64(simulated):
  for S, tau in simulated.items():
    np.testing.assert_array_equal(delay.tau_table(S), tau, err_msg=f"S={S}")


def test_floor_form_equals_every_parity_polynomial():
  # Each parity polynomial evaluated exactly (its rational coefficients as Fractions; the
  # same value as sympy's subs, ~50x faster than calling subs at 8555 points).
  f = delay.tau_evaluator()
  terms = {case: [(e, Fraction(int(c.p), int(c.q))) for e, c in
                  sp.Poly(poly, delay.S, delay.i, delay.j).terms()]
           for case, poly in delay.tau_parity_cases().items()}
  for S in range(1, 30):
    for i in range(1, S + 1):
      for j in range(1, S + 1):
        expected = sum(c * S ** a * i ** b * j ** d
                       for (a, b, d), c in terms[(S % 2, i % 2, j % 2)])
        assert int(f(S, i, j)) == int(expected)


def test_tau_max_own_block_and_mean_match_simulation(simulated):
  for S, tau in simulated.items():
    assert delay.tau_max(S) == tau.max()
    assert int(sp.floor(delay.tau_max_floor_form().subs(delay.S, S))) == tau.max()
    own = delay.own_block_by_parity()
    for i in range(1, S + 1):
      assert own[(S % 2, i % 2)].subs({delay.S: S, delay.i: i}) == tau[i - 1, i - 1]
    assert delay.mean_delay(S) == pytest.approx(tau.mean(), abs=1e-12)


def test_tau_max_is_S2_minus_S_over_2_plus_bounded(simulated):
  asym = delay.asymptotics()
  assert asym["claim_holds"]
  for branch in asym["per_parity"].values():
    assert branch["degree"] == 2
    assert branch["leading"] == delay.S**2
    assert branch["second"] == -delay.S / 2
    assert branch["limit_remainder"].is_finite
  remainders = [tau.max() - (S**2 - S / 2) for S, tau in simulated.items()]
  assert max(abs(r) for r in remainders) <= 0.5


def test_tau_monotone_so_max_is_first_block(simulated):
  assert delay.monotone_in_i_and_j()
  for S, tau in simulated.items():
    assert tau[0, 0] == tau.max()
    assert (np.diff(tau, axis=0) <= 0).all() and (np.diff(tau, axis=1) <= 0).all()
