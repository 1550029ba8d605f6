"""Review: the buffer budgets are stated in d, but buffers hold padded blocks (S * D >= d)."""
import pytest

from rpd.engine import buffer_floats
from rpd.problems import get_problem
from rpd.rules import get_rule


@pytest.mark.xfail(strict=True, reason="padding: R*S*D numbers exceed (S+1)d when d is not a "
                   "multiple of S and d < S(S-1) (S=8, d=9: 128 > 81); budget holds for S | d")
def test_pipedream_buffer_budget_with_padding():
  S, d = 8, 9
  prob = get_problem("quadratic", S, d=d)
  assert buffer_floats(get_rule("pipedream", S), prob.D) <= (S + 1) * d


@pytest.mark.xfail(strict=True, reason="padding: tau_max*D exceeds (tau_max+1)d/S + d for "
                   "S=8, d=9 (120 > 77.6)")
def test_rpd_buffer_budget_with_padding():
  S, d = 8, 9
  prob = get_problem("quadratic", S, d=d)
  rule = get_rule("rpd", S)
  assert buffer_floats(rule, prob.D) <= (rule.tau_max + 1) * d / S + d
