"""The common suite every registered stale-update rule runs through (registry-driven).

Adding a rule to ``rpd.rules.RULES`` without an example spec here fails
``test_every_rule_has_an_example``; with one, the rule gets every test below.
"""
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from rpd import engine
from rpd.engine import run, sample_key, select_key
from rpd.problems import get_problem
from rpd.rules import RULES, IterationRule, ProgramRule, get_rule

S = 4
D = 3


@pytest.fixture(scope="module")
def table_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("rules") / "tau.npy"
  rng = np.random.default_rng(0)
  np.save(path, rng.integers(0, 7, size=(S, S)))
  return str(path)


EXAMPLES = {
    "none": ["none"],
    "constant": ["constant:3"],
    "table": ["table:{table}"],
    "rpd": ["rpd", "rpd:uniform:5"],
    "pipedream": ["pipedream"],
    "sync": ["sync"],
    "schedule": ["schedule:pipedream", "schedule:pipemare", "schedule:gpipe"],
    "predict": ["predict:pipedream", "predict:rpd"],
    "dc": ["dc:pipedream", "dc:0.5:rpd"],
    "adapt": ["adapt:pipedream", "adapt:inv:rpd"],
    "pipemare": ["pipemare:pipedream", "pipemare:20:rpd"],
    "2bw": ["2bw", "adapt:2bw"],
}
SPECS = [s for specs in EXAMPLES.values() for s in specs]


def build(spec, table_file):
  return get_rule(spec.format(table=table_file), S)


def problem(noise=0.3):
  return get_problem("quadratic", S, d=S * D, noise=noise, seed=1)


def test_every_rule_has_an_example():
  assert set(EXAMPLES) == set(RULES)


@pytest.mark.parametrize("spec", SPECS)
def test_compiles_once(spec, table_file):
  rule = build(spec, table_file)
  prob = problem()
  K = rule.updates_per_step * 6
  run(prob, rule, gamma=0.05, K=K, key=jax.random.key(0))
  size = engine._run_jit._cache_size()
  run(prob, rule, gamma=0.07, K=K, key=jax.random.key(1))
  assert engine._run_jit._cache_size() == size


@pytest.mark.parametrize("spec", SPECS)
def test_state_shape_and_dtype_fixed(spec, table_file):
  before, after = engine.step_shapes(problem(), build(spec, table_file))
  assert jax.tree.structure(before) == jax.tree.structure(after)
  for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)):
    assert (a.shape, a.dtype) == (b.shape, b.dtype)


def plain_block_sgd(prob, rule, gamma, K, key):
  """Reference: block SGD with the rule's block choice, no staleness, written directly."""
  def step(x, k):
    i, _, _ = rule.select(rule.init_state(), select_key(key, k), k)
    g = prob.grad(x, prob.sample(sample_key(key, k)))
    return x.at[i].set(x[i] - gamma * g[i]), None
  x0 = prob.init(key)
  return jax.lax.scan(step, x0, jnp.arange(K, dtype=jnp.int32))[0]


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
  if isinstance(rule, ProgramRule):
    ref = plain_sgd(prob, gamma, K // S, key)
  else:
    ref = plain_block_sgd(prob, rule, gamma, K, key)
  np.testing.assert_array_equal(out, np.asarray(ref))


@pytest.mark.parametrize("spec", SPECS)
def test_realized_delays_within_bounds(spec, table_file):
  rule = build(spec, table_file)
  K = rule.updates_per_step * max(8, 2 * rule.tau_max)
  res = run(problem(), rule, gamma=0.01, K=K, key=jax.random.key(0), instrument=True)
  tau, blocks = res.realized["tau"], res.realized["block"]
  assert tau.shape == (K, S) and blocks.shape == (K,)
  assert tau.min() >= 0 and tau.max() <= rule.tau_max
  assert blocks.min() >= 0 and blocks.max() < S


@pytest.mark.parametrize("spec", SPECS)
def test_same_seed_same_result(spec, table_file):
  rule = build(spec, table_file)
  K = rule.updates_per_step * 8
  a = run(problem(), rule, gamma=0.05, K=K, key=jax.random.key(5))
  b = run(problem(), rule, gamma=0.05, K=K, key=jax.random.key(5))
  np.testing.assert_array_equal(a.x_SxD, b.x_SxD)
  for name in a.metrics:
    np.testing.assert_array_equal(a.metrics[name], b.metrics[name])


@pytest.mark.parametrize("spec", SPECS)
def test_spec_round_trip(spec, table_file):
  rule = build(spec, table_file)
  assert rule.spec == spec.format(table=table_file)
  assert get_rule(rule.spec, S) == rule
  assert type(rule).from_spec(rule.spec, S) == rule
