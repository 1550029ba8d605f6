"""Mitigations as transforms: state on the gradient, chaining, traced hyperparameters.

* a hook that keeps state on the gradient (delay-compensated momentum, written here through
  ``Hook.update``) equals its NumPy reference on an iteration and a program base, alone and
  chained after ``dc``;
* chains apply inner first: ``adapt:dc`` and ``dc:adapt`` each equal their reference and
  differ from each other;
* a sweep over ``dc``'s lambda or ``pipemare``'s decay compiles once and equals the runs.
"""
import dataclasses

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from rpd import engine
from rpd.engine import run, sweep
from rpd.problems import get_problem
from rpd.rules import get_rule, with_hook
from rpd.rules.base import Hook, HookReference

S, D = 4, 2


@dataclasses.dataclass(frozen=True)
class _DCMomentum(Hook):
  """``m_b <- beta m_b + g_b``; the update uses ``m_b`` (state kept on the gradient)."""

  beta: float = 0.5
  name: str = "dcm"
  changes_grad: bool = True

  def init(self, x0):
    return jnp.zeros_like(x0)

  def update(self, m, g_rows, x_rows, xhat_rows, tau_rows, *, blocks, k):
    rows = self.beta * m[blocks] + g_rows
    return rows, m.at[blocks].set(rows)

  def reference(self, S, D):
    ref, m = HookReference(), np.zeros((S, D))

    def grad(g, x, point, tau, c, b):
      m[b] = self.beta * m[b] + g
      return m[b].copy()
    ref.grad = grad
    return ref


def _check(rule, K):
  prob = get_problem("quadratic", S, d=S * D, noise=0.0, seed=3, L=1.0, mu=0.1)
  A, b = np.asarray(prob.A, np.float64), np.asarray(prob.b, np.float64)
  x0 = np.random.default_rng(0).standard_normal((S, D))
  key = jax.random.key(1)
  out = run(prob, rule, gamma=0.1, K=K, key=key, x0=x0).x_SxD
  ref = rule.reference(x0, lambda x: (A @ x.reshape(-1) - b).reshape(S, D), 0.1, K, key)
  np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
  return out


@pytest.mark.parametrize("base", ["constant:2", "pipedream", "dc:0.5:pipedream"])
def test_state_on_the_gradient_equals_its_reference(base):
  rule = with_hook(get_rule(base, S), _DCMomentum())
  plain = _check(get_rule(base, S), 12 * S)
  assert not np.allclose(_check(rule, 12 * S), plain)  # the momentum does something


def test_chains_apply_the_inner_mitigation_first():
  a = _check(get_rule("adapt:dc:4:pipedream", S), 12 * S)
  b = _check(get_rule("dc:4:adapt:pipedream", S), 12 * S)
  assert not np.allclose(a, b)


@pytest.mark.parametrize("template,values", [("dc:{}:pipedream", [0.0, 0.5, 3.0]),
                                             ("pipemare:0:{}:rpd", [0.0, 0.3, 0.9])])
def test_a_sweep_over_a_hyperparameter_compiles_once(template, values):
  prob = get_problem("quadratic", S, d=S * D, noise=0.1, seed=1)
  rules = [get_rule(template.format(v), S) for v in values]
  kw = dict(gammas=[0.1] * 3, seeds=[0, 1, 2], K=8 * S)
  res = sweep(prob, rules[0], variants=rules, **kw)
  size = engine._sweep_jit._cache_size()
  again = [get_rule(template.format(v + 0.05), S) for v in values]
  sweep(prob, again[0], variants=again, **kw)
  assert engine._sweep_jit._cache_size() == size  # new values, same program
  for n, rule in enumerate(rules):
    one = run(prob, rule, gamma=0.1, K=8 * S, key=jax.random.key(n))
    np.testing.assert_allclose(res.x_SxD[n], one.x_SxD, rtol=0, atol=1e-12)
  assert not np.allclose(res.x_SxD[0], res.x_SxD[2])
  size = engine._run_jit._cache_size()
  for v in values:
    run(prob, get_rule(template.format(v), S), gamma=0.1, K=8 * S, key=jax.random.key(0))
  assert engine._run_jit._cache_size() <= size + 1  # one program for every value
