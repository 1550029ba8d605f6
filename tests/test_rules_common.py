"""The common suite every registered stale-update rule and mitigation runs through.

Its parameters come from the registry (:mod:`rpd.rules.registry`): every example spec of
every registered rule and mitigation, and every mitigation composed (with its default
arguments) on an iteration base (``rpd``) and a program base (``pipedream``). A rule file
that registers itself gets every test below, with no edit here.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from rpd import engine
from rpd.engine import run, sample_key, select_key
from rpd.problems import get_problem
from rpd.rules import RULES, get_rule
from rpd.rules.registry import examples

S = 4
D = 3


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("rules") / "tau.npy"
  rng = np.random.default_rng(0)
  np.save(path, rng.integers(0, 7, size=(S, S)))
  return str(path)


SPECS = examples()
MITIGATED = [f"{e.name}:{base}" for e in RULES.values() if e.mitigation
             for base in ("rpd", "pipedream")]


def build(spec, table_file):
  return get_rule(spec.format(table=table_file), S)


def problem(noise=0.3):
  return get_problem("quadratic", S, d=S * D, noise=noise, seed=1)


# Compiled programs are shared between tests (``K``, ``instrument`` and the problem's structure
# are static arguments of the engine's jitted driver; ``gamma``, the key and ``x0`` are traced):
# the compile-once, realized-delays, same-seed and reference tests all run one instrumented
# program per spec (reference problem, ``reference_K``), so each spec compiles two engine
# programs (that one and its zero-delay rule's), not three. The non-instrumented path runs
# for every spec in the zero-delay test (bitwise against plain SGD), and
# tests/test_replay.py checks both paths against NumPy replays.

def reference_problem():
  """A dense quadratic with exact gradients (``noise=0``): the rules' NumPy references."""
  return get_problem("quadratic", S, d=S * D, noise=0.0, seed=2, L=1.0, mu=0.1)


def reference_K(rule):
  ups = rule.updates_per_step
  return ups * -(-max(24, 3 * rule.tau_max) // ups)


def test_every_rule_has_examples():
  assert all(e.examples for e in RULES.values())
  assert len(set(SPECS)) == len(SPECS)


@pytest.mark.parametrize("spec", SPECS)
def test_compiles_once(spec, table_file):
  rule = build(spec, table_file)
  prob = reference_problem()
  K = reference_K(rule)
  run(prob, rule, gamma=0.05, K=K, key=jax.random.key(0), instrument=True)
  size = engine._run_jit._cache_size()
  run(prob, rule, gamma=0.07, K=K, key=jax.random.key(1), instrument=True)
  assert engine._run_jit._cache_size() == size


@pytest.mark.parametrize("spec", SPECS)
def test_state_shape_and_dtype_fixed(spec, table_file):
  before, after = engine.step_shapes(problem(), build(spec, table_file))
  assert jax.tree.structure(before) == jax.tree.structure(after)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    assert (a.shape, a.dtype) == (b.shape, b.dtype)


def plain_block_sgd(prob, rule, gamma, K, key):
  """Reference: block SGD with the rule's block choice, no staleness, written directly.

  The rule's selection state is threaded through (a block choice may depend on it)."""
  def step(carry, k):
    x, state = carry
    i, _, state = rule.select(state, select_key(key, k), k)
    g = prob.grad(x, prob.sample(sample_key(key, k)))
    return (x.at[i].set(x[i] - gamma * g[i]), state), None
  x0 = prob.init(key)
  return jax.lax.scan(step, (x0, rule.init_state()), jnp.arange(K, dtype=jnp.int32))[0][0]


def plain_sgd(prob, gamma, n_steps, key):
  """Reference: plain minibatch SGD, one sample per step, all blocks at once."""
  def step(x, n):
    return x - gamma * prob.grad(x, prob.sample(sample_key(key, n))), None
  return jax.lax.scan(step, prob.init(key), jnp.arange(n_steps, dtype=jnp.int32))[0]


@pytest.mark.parametrize("spec", SPECS)
def test_zero_delay_reproduces_plain_sgd_bitwise(spec, table_file):
  rule = build(spec, table_file).zero_delay()
  prob = problem()
  key = jax.random.key(3)
  gamma = 0.05
  K = rule.updates_per_step * 12
  out = run(prob, rule, gamma=gamma, K=K, key=key).x_SxD
  if rule.updates_per_gradient == S:  # each gradient updates every block: minibatch SGD
    ref = plain_sgd(prob, gamma, K // S, key)
  else:
    ref = plain_block_sgd(prob, rule, gamma, K, key)
  np.testing.assert_array_equal(out, np.asarray(ref))


@pytest.mark.parametrize("spec", SPECS)
def test_realized_delays_within_bounds(spec, table_file):
  rule = build(spec, table_file)
  K = reference_K(rule)  # >= 3 tau_max iterations: every delay can reach tau_max
  res = run(reference_problem(), rule, gamma=0.01, K=K, key=jax.random.key(0),
            instrument=True)
  tau, blocks = res.realized["tau"], res.realized["block"]
  assert tau.shape == (K, S) and blocks.shape == (K,)
  assert tau.min() >= 0 and tau.max() <= rule.tau_max
  assert blocks.min() >= 0 and blocks.max() < S


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_result(spec, table_file):
  rule = build(spec, table_file)
  K = reference_K(rule)  # the realized-delays test's program (instrumented)
  a = run(reference_problem(), rule, gamma=0.05, K=K, key=jax.random.key(5), instrument=True)
  b = run(reference_problem(), rule, gamma=0.05, K=K, key=jax.random.key(5), instrument=True)
  np.testing.assert_array_equal(a.x_SxD, b.x_SxD)
  for name in a.metrics:
    np.testing.assert_array_equal(a.metrics[name], b.metrics[name])
  for name in a.realized:
    np.testing.assert_array_equal(a.realized[name], b.realized[name])


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trip(spec, table_file):
  rule = build(spec, table_file)
  assert get_rule(rule.spec, S) == rule
  assert get_rule(rule.spec, S).spec == rule.spec
  assert type(rule).from_spec(rule.spec, S) == rule


@pytest.mark.parametrize("spec", sorted(set(SPECS) | set(MITIGATED)))
def test_engine_equals_the_rules_numpy_reference(spec, table_file):
  """The engine (float64, exact gradients of a dense quadratic) against the rule's own
  float64 NumPy reference (``rule.reference``), to 1e-12."""
  rule = build(spec, table_file)
  prob = reference_problem()
  A, b = np.asarray(prob.A, np.float64), np.asarray(prob.b, np.float64)
  assert A.ndim == 2 and A.dtype == np.float64
  x0 = np.random.default_rng(1).standard_normal((S, D))
  K = reference_K(rule)
  key = jax.random.key(7)
  gamma = 0.2
  out = run(prob, rule, gamma=gamma, K=K, key=key, x0=x0, instrument=True).x_SxD
  ref = rule.reference(x0, lambda x: (A @ x.reshape(-1) - b).reshape(S, D), gamma, K, key)
  assert not np.allclose(ref, x0)
  np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
