"""The rule protocol: the engine's one loop, its delay check, segmented runs, the closed form."""
import dataclasses
import inspect

import numpy as np
import pytest
import jax
import jax.numpy as jnp

from rpd import engine
from rpd.engine import Carry, run
from rpd.errors import DelayRangeError
from rpd.problems import get_problem
from rpd.rules import Hook, get_rule, with_hook
from rpd.rules.base import IterationRule, check_S, frozen, uniform_block
from rpd.rules.rpd_rule import pipedream_table
from rpd.theory.delay import tau_table


def test_engine_has_no_rule_type_branches():
  src = inspect.getsource(engine)
  assert "isinstance(rule" not in src and "ProgramRule" not in src
  assert issubclass(Carry, tuple) and "rule" in Carry._fields


@frozen
class _TooStale(IterationRule):
  """A buggy rule: claims tau_max = 2 but returns 3 at iteration 5."""

  S: int
  name: str = "too-stale"

  @property
  def tau_max(self):
    return 2

  def zero_delay(self):
    return self

  def select(self, state, key, k):
    tau = jnp.where(k == 5, 3, 1) * jnp.ones((self.S,), jnp.int32)
    return uniform_block(key, self.S), tau, state


def test_a_delay_above_tau_max_is_an_error():
  prob = get_problem("quadratic", 2, d=4)
  with pytest.raises(DelayRangeError, match=r"delay 3 at iteration 5, outside \[0, tau_max=2\]"):
    run(prob, _TooStale(2), gamma=0.1, K=8, key=jax.random.key(0))
  run(prob, _TooStale(2), gamma=0.1, K=5, key=jax.random.key(0))  # before iteration 5: fine


@pytest.mark.parametrize("S", range(1, 11))
def test_pipedream_closed_form_equals_sympy_and_the_program(S):
  table = pipedream_table(S)
  np.testing.assert_array_equal(table, np.asarray(tau_table(S), np.int64))
  np.testing.assert_array_equal(table, get_rule("pipedream", S).program().delay_table())


@pytest.mark.parametrize("spec,n_dev", [("pipedream", None), ("rpd", None), ("pipedream", 2),
                                        ("constant:3", 2)])
def test_segmented_run_equals_one_program(spec, n_dev):
  S = 4
  prob = get_problem("quadratic", S, d=8, noise=0.2, seed=2)
  rule = get_rule(spec, S)
  mesh = None if n_dev is None else jax.make_mesh((n_dev,), ("stage",))
  kw = dict(gamma=0.1, K=8 * S, key=jax.random.key(1), record_every=2 * S, mesh=mesh,
            instrument=True)
  seen = []
  a = run(prob, rule, **kw)
  b = run(prob, rule, callback=lambda k, m: seen.append((k, len(m["loss"]))), **kw)
  np.testing.assert_array_equal(a.x_SxD, b.x_SxD)
  for name in a.metrics:
    np.testing.assert_array_equal(a.metrics[name], b.metrics[name])
  np.testing.assert_array_equal(a.realized["tau"], b.realized["tau"])
  assert seen[0] == (0, 1) and seen[-1] == (8 * S, 5) and not b.stopped


def test_segmented_run_stops_when_asked():
  S = 4
  prob = get_problem("quadratic", S, d=8, noise=0.2)
  res = run(prob, get_rule("pipedream", S), gamma=0.1, K=16 * S, key=jax.random.key(0),
            record_every=S, callback=lambda k, m: k >= 3 * S)
  assert res.stopped and res.K == 3 * S and list(res.metrics["k"]) == [0, S, 2 * S, 3 * S]
  full = run(prob, get_rule("pipedream", S), gamma=0.1, K=3 * S, key=jax.random.key(0),
             record_every=S)
  np.testing.assert_array_equal(res.x_SxD, full.x_SxD)


@dataclasses.dataclass(frozen=True)
class _Noop(Hook):
  name: str = "noop"
  changes_read: bool = True
  changes_grad: bool = True
  observes: bool = True


@pytest.mark.parametrize("spec", ["pipedream", "rpd"])
def test_a_hook_that_changes_nothing_changes_nothing(spec):
  S = 4
  prob = get_problem("quadratic", S, d=8, noise=0.2)
  rule = get_rule(spec, S)
  hooked = with_hook(rule, _Noop())
  assert hooked.name == f"noop:{spec}"
  kw = dict(gamma=0.1, K=8 * S, key=jax.random.key(0))
  np.testing.assert_array_equal(run(prob, rule, **kw).x_SxD, run(prob, hooked, **kw).x_SxD)


def test_segmented_run_stopped_between_records_records_where_it_stopped():
  S = 2
  prob = get_problem("quadratic", S, d=4, noise=0.2)
  rule = get_rule("constant:2", S)
  res = run(prob, rule, gamma=0.1, K=64 * 32, key=jax.random.key(0), record_every=64 * 16,
            callback=lambda k, m: k >= 64 * 3)
  assert res.stopped and res.K == 64 * 3 and list(res.metrics["k"]) == [0, 64 * 3]
  full = run(prob, rule, gamma=0.1, K=64 * 3, key=jax.random.key(0), record_every=64 * 3)
  np.testing.assert_array_equal(res.x_SxD, full.x_SxD)
  np.testing.assert_array_equal(res.metrics["loss"], full.metrics["loss"])


def test_readme_mitigation_example():
  """The README's worked example: the one hook file registers itself; zero delay, the NumPy
  reference, a sweep."""
  import pathlib
  import re
  import types

  from rpd.engine import sweep
  from rpd.rules import RULES
  readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
  section = readme[readme.index("<!-- example: trust -->"):]
  blocks = re.findall(r"```python\n(.*?)```", section, re.S)
  mod = types.ModuleType("trust")
  assert "trust" not in RULES
  try:
    exec(compile(blocks[0], "trust.py", "exec"), mod.__dict__)
    S = 4
    rule = get_rule("trust:pipedream", S)
    assert rule.name == "trust:pipedream" and rule.hook == mod.Trust()
    assert get_rule("trust:1.5:rpd", S).spec == "trust:1.5:rpd"
    prob = get_problem("quadratic", S, d=8, noise=0.2)
    key = jax.random.key(0)
    zero = rule.zero_delay()
    plain = run(prob, get_rule("sync", S), gamma=0.1, K=4 * S, key=key)
    np.testing.assert_array_equal(run(prob, zero, gamma=0.1, K=4 * S, key=key).x_SxD,
                                  plain.x_SxD)
    a = run(prob, rule, gamma=0.3, K=16 * S, key=key)
    b = run(prob, get_rule("pipedream", S), gamma=0.3, K=16 * S, key=key)
    assert not np.array_equal(a.x_SxD, b.x_SxD)  # the hook does something under staleness
    exact = get_problem("quadratic", S, d=8, noise=0.0)
    A, bv = np.asarray(exact.A, np.float64), np.asarray(exact.b, np.float64)
    x0 = np.ones((S, 2))
    ref = rule.reference(x0, lambda x: (A @ x.reshape(-1) - bv).reshape(S, 2), 0.3, 16 * S, key)
    np.testing.assert_allclose(run(exact, rule, gamma=0.3, K=16 * S, key=key, x0=x0).x_SxD,
                               ref, rtol=0, atol=1e-12)
    res = sweep(prob, rule, gammas=[0.05, 0.1], seeds=[0, 0], K=8 * S)
    assert res.x_SxD.shape == (2, S, 2)
  finally:
    RULES.pop("trust", None)


@frozen
class _TwoUpdates(IterationRule):
  """A buggy rule: its step applies two block updates (updates_per_step says one)."""

  S: int
  name: str = "two-updates"

  @property
  def tau_max(self):
    return 0

  def zero_delay(self):
    return self

  def select(self, state, key, k):
    return uniform_block(key, self.S), jnp.zeros((self.S,), jnp.int32), state

  def step(self, carry, key, ctx):
    return super().step(super().step(carry, key, ctx), key, ctx)


@frozen
class _NoUpdate(_TwoUpdates):
  """A buggy rule: its step applies no block update."""

  name: str = "no-update"

  def step(self, carry, key, ctx):
    return carry


@pytest.mark.parametrize("cls,n", [(_TwoUpdates, 2), (_NoUpdate, 0)])
def test_a_step_with_the_wrong_update_count_raises(cls, n):
  prob = get_problem("quadratic", 2, d=4)
  with pytest.raises(engine.UpdateCountError,
                     match=rf"applied {n} block updates in a step; its updates_per_step is 1"):
    run(prob, cls(2), gamma=0.1, K=8, key=jax.random.key(0))


def test_engine_is_small_and_rules_do_not_import_it():
  """No import circle (rules import the key helpers from rpd.keys, never the engine);
  engine.py at most 400 lines, no function of the engine modules over 60 lines."""
  import ast
  import pathlib
  root = pathlib.Path(engine.__file__).parent
  for f in (root / "rules").glob("*.py"):
    for node in ast.walk(ast.parse(f.read_text())):
      if isinstance(node, ast.ImportFrom):
        assert not (node.module or "").startswith("rpd.engine"), (f, node.module)
      elif isinstance(node, ast.Import):
        assert not any(a.name.startswith("rpd.engine") for a in node.names), f
  assert len((root / "engine.py").read_text().splitlines()) <= 400
  for name in ("engine.py", "engine_core.py", "engine_context.py", "engine_segments.py"):
    for node in ast.walk(ast.parse((root / name).read_text())):
      if isinstance(node, ast.FunctionDef):
        assert node.end_lineno - node.lineno < 60, (name, node.name)
