"""Mutation check for the additive-table theorem (``theory/coupled.py``): halving any
constant of the mismatch lemma, ``tau -> tau/2`` in either of its parts, a lost Young factor,
and an additivity test that accepts every table must each fail a named test of
``tests/test_coupled.py`` (pattern of ``tests/test_mutations_theory.py``: one text
substitution in a copy of the package, the named tests run on the copy and must fail; the
unmutated copy passes them)."""
from mutants import assert_mutants_caught

T = "tests/test_coupled.py"
HOLDS = f"{T}::test_lemma_holds_on_every_stored_instance_and_is_attained"
HAND = f"{T}::test_mismatch_lemma_is_the_hand_form"
RATE = f"{T}::test_step_size_condition_and_rate_are_the_hand_derivation"
ADD = f"{T}::test_pipedream_table_is_additive_for_every_S"
F = "theory/coupled.py"

MUTANTS = [
    ("mean part halved", F, "  mean = lags / S ** 2 * L ** 2 * U",
     "  mean = lags / S ** 2 * L ** 2 * U / 2", [HOLDS, HAND, RATE]),
    ("tau/2 in the mean part (one lag in two)", F, "  lags = tau\n", "  lags = tau / 2\n",
     [HOLDS, HAND]),
    ("martingale part halved", F, "  martingale = L ** 2 * (second_moment + tau * sigma2 / S)",
     "  martingale = L ** 2 * (second_moment + tau * sigma2 / S) / 2", [HOLDS, HAND]),
    ("tau/2 in the noise part", F, "  martingale = L ** 2 * (second_moment + tau * sigma2 / S)",
     "  martingale = L ** 2 * (second_moment + tau / 2 * sigma2 / S)", [HOLDS, HAND, RATE]),
    ("Young's factor on the mean part dropped", F, "  young = (1 + a, 1 + 1 / a)",
     "  young = (1, 1 + 1 / a)", [HAND, RATE]),
    ("every table accepted as additive", F,
     "  return (alpha, beta) if np.array_equal(alpha[:, None] + beta[None, :], T) else None",
     "  return (alpha, beta)", [ADD]),
]


def test_coupled_mutants_are_caught(tmp_path):
  assert_mutants_caught(tmp_path, MUTANTS, skip=("derivation.json", "THEOREM.md"),
                        extra=("--noconftest",),
                        where=lambda p: p.replace("theory/", "rpd/theory/", 1))
