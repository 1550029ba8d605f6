"""The common suite every registered problem runs through (registry-driven, like the rules').

Adding a problem to ``rpd.problems.PROBLEMS`` without an example here fails
``test_every_problem_has_an_example``; with one, the problem gets every test below.
"""
import functools
import re
import numpy as np
import pytest
import jax
import jax.numpy as jnp

from rpd.errors import UnknownNameError
from rpd.problems import OPTIONS, PROBLEMS, get_problem, problem_options
from rpd.rules import get_rule

S = 4  # stages of every example but the transformer's
EXAMPLES = {
    "quadratic": ("quadratic", dict(d=12, noise=0.1, seed=1)),
    "logistic": ("logistic", dict(d=12, n=32, batch=4, seed=1)),
    "charlm": ("charlm", dict(batch=2, seed=0, n_layers=6, hidden=8, emb=4, n_chains=4,
                              length=64, n_eval=32)),
    # S = 2: its two stages still differ in size (the embedding on the first, the head on the
    # last), so padding is exercised; each stage is one transformer block, and each block is
    # compiled into every program (S = 4 doubled this file's compile time).
    "transformer": ("transformer", dict(S=2, n_chars=4000, T=8, d_model=8, heads=2, batch=2,
                                        n_eval=4)),
    "mlp": ("mlp", dict(hidden=8, n_layers=4, batch=4)),
}


@functools.lru_cache(maxsize=None)
def build(name):
  """The example problem (built once per module: problems are immutable pytrees)."""
  spec, opts = EXAMPLES[name]
  opts = dict(opts)
  return get_problem(spec, opts.pop("S", S), **opts)


# The problems' functions run jitted (one compiled program each) rather than op by op: eagerly,
# every primitive of a network's gradient is compiled on its own (most of this file's time).
init = jax.jit(lambda prob, key: prob.init(key))


@jax.jit
def grads(prob, x, key):
  """``(grad, jax.grad of loss, full_grad, jax.grad of full_loss)`` at ``x``: one program per
  problem, shared by the padding and the gradient tests (``x`` and ``key`` are traced)."""
  batch = prob.sample(key)
  return (prob.grad(x, batch), jax.grad(prob.loss)(x, batch), prob.full_grad(x),
          jax.grad(prob.full_loss)(x))


def test_every_problem_has_an_example():
  assert set(EXAMPLES) == set(PROBLEMS) == set(OPTIONS)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_init_shape_dtype_and_padding(name):
  prob = build(name)
  x0 = init(prob, jax.random.key(0))
  assert x0.shape == (prob.S, prob.D) and jnp.issubdtype(x0.dtype, jnp.floating)
  assert prob.d == sum(prob.block_sizes) and prob.D == max(prob.block_sizes)
  g, _, fg, _ = grads(prob, x0 + 0.01, jax.random.key(2))
  for s, n in enumerate(prob.block_sizes):
    assert np.all(np.asarray(fg[s, n:]) == 0)  # no gradient on the padding
    assert np.all(np.asarray(g[s, n:]) == 0)  # nor on the stochastic gradient's


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_grad_equals_jax_grad_of_the_loss(name):
  prob = build(name)
  key = jax.random.key(1)
  x = init(prob, key) + 0.05 * jax.random.normal(key, (prob.S, prob.D))
  g, g_ref, fg, fg_ref = grads(prob, x, jax.random.key(2))
  np.testing.assert_allclose(np.asarray(g), np.asarray(g_ref), rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(np.asarray(fg), np.asarray(fg_ref), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_engine_compiles_once_per_problem_structure(name):
  from rpd import engine
  prob = build(name)
  rule = get_rule("pipedream", prob.S)
  x0 = init(prob, jax.random.key(0))  # the engine's default x0, from the jitted init
  engine.run(prob, rule, gamma=0.01, K=2 * prob.S, key=jax.random.key(0), x0=x0)
  size = engine._run_jit._cache_size()
  engine.run(prob, rule, gamma=0.02, K=2 * prob.S, key=jax.random.key(1), x0=x0 + 0.01)
  assert engine._run_jit._cache_size() == size


def test_unknown_names_read_alike():
  with pytest.raises(UnknownNameError, match=r"^unknown problem 'nope'; known: charlm, "):
    get_problem("nope", S)
  from rpd.rules import RULES
  known = ", ".join(sorted(RULES))  # from the registry: a new rule must not break this test
  with pytest.raises(UnknownNameError, match=rf"^unknown rule 'nope'; known: {re.escape(known)}$"):
    get_rule("nope", S)
  with pytest.raises(UnknownNameError, match=r"^unknown schedule 'nope'; known: "):
    get_rule("schedule:nope", S)
  with pytest.raises(UnknownNameError, match=r"^unknown charlm option 'x'"):
    get_problem("charlm", S, x=1)


def test_problem_options_select_what_each_problem_takes():
  avail = dict(d=8, n=16, seed=3, noise=0.5, batch=4)
  assert problem_options("quadratic", **avail) == dict(d=8, seed=3, noise=0.5)
  assert problem_options("logistic:breast_cancer", **avail) == dict(batch=4)
  assert problem_options("charlm", **avail) == dict(seed=3, batch=4)


@pytest.mark.parametrize("spec", ["constant:99999999999", "rpd:uniform:2147483648"])
def test_int32_overflow_in_rule_specs_is_one_line_exit_2(spec, capsys, tmp_path):
  from rpd.cli import main
  code = main(["train", "--rule", spec, "--steps", "8", "--stages", "2", "--out",
               str(tmp_path)])
  err = capsys.readouterr().err.strip()
  assert code == 2 and "\n" not in err and "too large" in err and spec.split(":")[-1] in err


def test_unknown_baseline_reads_alike():
  from rpd.baselines import get_baseline
  with pytest.raises(UnknownNameError, match=r"^unknown baseline 'nope'; known: localsgd$"):
    get_baseline("nope")
  with pytest.raises(KeyError):  # still a failed lookup for callers that catch KeyError
    get_baseline("nope")
