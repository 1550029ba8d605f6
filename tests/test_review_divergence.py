"""Review: divergence under regrouped program updates matches the one-update-at-a-time run."""
import numpy as np
import pytest
import jax

from rpd.engine import run
from rpd.problems import get_problem
from rpd.rules import get_rule


@pytest.mark.parametrize("spec,gamma,n_dev", [("sync", 50.0, None), ("pipedream", 50.0, None),
                                              ("sync", 50.0, 2), ("pipedream", 50.0, 2)])
def test_divergence_grouped_equals_sequential(spec, gamma, n_dev):
  """instrument=True runs events one by one; the default regroups them. Both must stop at
  the same iteration and skip the same later updates (the first bad update is not the
  first block of its group here)."""
  S = 4
  prob = get_problem("quadratic", S, d=8, noise=0.0, seed=1)
  rule = get_rule(spec, S)
  mesh = None if n_dev is None else jax.make_mesh((n_dev,), ("stage",))
  kw = dict(gamma=gamma, K=4 * 800, key=jax.random.key(0), mesh=mesh)
  seq = run(prob, rule, instrument=True, **kw)
  grp = run(prob, rule, **kw)
  assert seq.diverged and grp.diverged
  assert grp.diverged_at == seq.diverged_at
  np.testing.assert_array_equal(grp.x_SxD, seq.x_SxD)
