"""Mutation check for the additive-table theorems (``theory/coupled.py``, RPD, and
``theory/cyclic.py``, PD's cyclic order): halving any constant of a mismatch lemma, ``tau ->
tau/2`` (``n -> n/2``) in any of its parts, a lost Young factor, a wrong window count, a wrong
cycle reduction and an additivity test that accepts every table must each fail a named test
of ``tests/test_coupled.py`` / ``tests/test_cyclic.py`` (pattern of
``tests/test_mutations_theory.py``: one text substitution in a copy of the package, the named
tests run on the copy and must fail; the unmutated copy passes them)."""
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


C = "tests/test_cyclic.py"
CYC = "theory/cyclic.py"
C_HOLDS = f"{C}::test_lemma_holds_on_every_stored_instance_and_is_attained"
C_HAND = f"{C}::test_certificate_is_the_hand_derivation"
C_RED = f"{C}::test_reduction_equals_per_iteration_pipedream"

CYCLIC_MUTANTS = [
    ("cycle lemma: gradient part halved", CYC, "  mean = n * L ** 2 * Vw",
     "  mean = n * L ** 2 * Vw / 2", [C_HOLDS, C_HAND]),
    ("cycle lemma: n/2 in the gradient part", CYC, "  mean = n * L ** 2 * Vw",
     "  mean = n / 2 * L ** 2 * Vw", [C_HOLDS, C_HAND]),
    ("cycle lemma: noise part halved", CYC, "  noise = n * L ** 2 * sigma2",
     "  noise = n * L ** 2 * sigma2 / 2", [C_HOLDS, C_HAND]),
    ("window count: n/2", CYC, '      Fact("window_count", SV - n * SG,',
     '      Fact("window_count", SV - n / 2 * SG,', [C_HAND]),
    ("reduction: ceil in place of floor", CYC,
     "  return np.floor_divide(T - pi[:, None] + pi[None, :], T.shape[0])",
     "  return -np.floor_divide(-(T - pi[:, None] + pi[None, :]), T.shape[0])", [C_RED]),
]


SM = "theory/smooth.py"
SM_HAND = "tests/test_smooth.py::test_certificate_is_the_hand_derivation"
SMOOTH_MUTANTS = [
    ("anchor: tau instead of tau^2 (one update per step forgotten)", SM,
     "  return Fact(\"anchor\", Dg_ - (1 + b) * Dl_ - (1 + 1 / b) * M ** 2 * gamma ** 2 * tau ** 2",
     "  return Fact(\"anchor\", Dg_ - (1 + b) * Dl_ - (1 + 1 / b) * M ** 2 * gamma ** 2 * tau",
     [SM_HAND]),
    ("anchor: Young's (1 + b) dropped", SM,
     "  return Fact(\"anchor\", Dg_ - (1 + b) * Dl_",
     "  return Fact(\"anchor\", Dg_ - Dl_", [SM_HAND]),
]


def test_additive_table_theorem_mutants_are_caught(tmp_path):
  """One copy-and-run per mutant, one unmutated baseline for all (theory only: no JAX)."""
  assert_mutants_caught(tmp_path, MUTANTS + CYCLIC_MUTANTS + SMOOTH_MUTANTS,
                        skip=("derivation.json", "THEOREM.md"), extra=("--noconftest",),
                        where=lambda p: p.replace("theory/", "rpd/theory/", 1))
