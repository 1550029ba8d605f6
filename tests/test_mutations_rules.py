"""Mutants of the rule protocol that must fail named tests of the common rule suite.

As in ``tests/test_mutations.py``: each mutant is a text substitution in a copy of the
package; the named tests run on the copy in a subprocess and must fail (exit code 1), and the
unmutated copy must pass them.

* a stateful rule that drops its state (``geom`` forgetting its ages) must fail the engine
  vs NumPy-reference test of the common suite;
* a rule whose step makes two block updates, or none, where ``updates_per_step`` says one,
  must fail a common test (the engine raises ``UpdateCountError``).
"""
from mutants import assert_mutants_caught

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


def test_rule_mutants_fail_named_common_tests(tmp_path):
  assert_mutants_caught(tmp_path, MUTANTS)
