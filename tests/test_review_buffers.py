"""Buffer budgets with padding: blocks are stored padded to D = ceil(d/S), so the engine issue's
budgets, stated in d, hold with d replaced by the padded size S*D (= d when S divides d), and
for pipedream also in d itself whenever d >= S(S-1). (Found in review: S=8, d=9 gives 128
buffer numbers > (S+1)d = 81.)"""
import pytest

from rpd.engine import buffer_floats
from rpd.problems import even_block_sizes
from rpd.rules import get_rule


@pytest.mark.parametrize("S", [2, 3, 5, 8])
def test_budgets_in_the_padded_size(S):
  pd, rpd = get_rule("pipedream", S), get_rule("rpd", S)
  for d in range(S, 3 * S * S):
    D = max(even_block_sizes(d, S))
    assert buffer_floats(pd, D) <= (S + 1) * S * D
    assert buffer_floats(rpd, D) <= (rpd.tau_max + 1) * D + S * D
    if d >= S * (S - 1):
      assert buffer_floats(pd, D) <= (S + 1) * d, d
    if d % S == 0:
      assert buffer_floats(rpd, D) <= (rpd.tau_max + 1) * d / S + d


def test_the_caveat_is_real():
  """Below d = S(S-1), padding can exceed the budget stated in d (documented in the README)."""
  S, d = 8, 9
  D = max(even_block_sizes(d, S))
  assert buffer_floats(get_rule("pipedream", S), D) > (S + 1) * d
