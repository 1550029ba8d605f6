"""Mutants of the rule protocol that must fail named tests of the common rule suite.

As in ``tests/test_mutations.py``: each mutant is a text substitution in a copy of the
package; the named tests run on the copy in a subprocess and must fail (exit code 1), and the
unmutated copy must pass them.

* a stateful rule that drops its state (``geom`` forgetting its ages) must fail the engine
  vs NumPy-reference test of the common suite;
* a rule whose step makes two block updates, or none, where ``updates_per_step`` says one,
  must fail a common test (the engine raises ``UpdateCountError``).
"""
import concurrent.futures

from test_mutations import _copy, _pytest

REF_GEOM = "tests/test_rules_common.py::test_engine_equals_the_rules_numpy_reference[geom:0.3:6]"
BOUNDS_CONST = "tests/test_rules_common.py::test_realized_delays_within_bounds[constant:3]"
APPLY = "    carry = ctx.apply(carry, i[None], g_i[None], k[None], tau=tau[None], xhat=xhat)\n"

MUTANTS = [
    ("stateful rule drops its state (ages forgotten)", "rpd/rules/geom.py",
     "    ages = jnp.where(reset, 0, jnp.minimum(ages + 1, self.tau)).astype(jnp.int32)\n"
     "    return i, ages, ages\n",
     "    ages = jnp.where(reset, 0, jnp.minimum(ages + 1, self.tau)).astype(jnp.int32)\n"
     "    return i, ages, self.init_state()\n", [REF_GEOM]),
    ("a step makes two block updates", "rpd/rules/base.py", APPLY, APPLY + APPLY.replace(
        "k[None]", "(k + 1)[None]"), [BOUNDS_CONST]),
    ("a step makes no block update", "rpd/rules/base.py", APPLY, "", [BOUNDS_CONST]),
]


def _mutant(tmp, name, path, old, new, tests):
  pkg = _copy(tmp)
  f = pkg / path
  text = f.read_text()
  assert text.count(old) == 1, f"{name}: the original text must occur once in {path}"
  f.write_text(text.replace(old, new))
  return _pytest(pkg, tests)


def test_rule_mutants_fail_named_common_tests(tmp_path):
  tests = sorted({t for m in MUTANTS for t in m[4]})
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    control = pool.submit(_pytest, _copy(tmp_path / "control"), tests)
    runs = {m[0]: pool.submit(_mutant, tmp_path / f"m{i}", *m) for i, m in enumerate(MUTANTS)}
    control = control.result()
    assert control.returncode == 0, control.stdout[-3000:] + control.stderr[-2000:]
    survivors = [f"{name}: exit {fut.result().returncode}\n{fut.result().stdout[-1500:]}"
                 for name, fut in runs.items() if fut.result().returncode != 1]
  assert not survivors, "\n\n".join(survivors)
