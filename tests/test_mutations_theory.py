"""Mutation check for the theory: tau -> tau/2 in any single place must fail a named test,
and so must a wrong step in each of the four general (symbolic-dimension) proofs.

As in ``tests/test_mutations.py``: each mutant is a text substitution in one file of a copy
of the package (``theory`` placed at ``rpd/theory``), and named tests run on the copy in a
subprocess and must fail (pytest exit code 1). The copy has NO ``derivation.json`` and no
``THEOREM.md``: the named tests never read them, so regenerating them after the edit (what a
developer does) cannot make a mutant pass. The unmutated copy must pass the same tests.
"""
import os
import subprocess
import sys

from mutants import assert_mutants_caught
ADV = "tests/test_lemma_adversarial.py::test_lemma_holds_on_every_adversarial_instance"
HAND = "tests/test_lemma_adversarial.py::test_step_size_condition_is_the_hand_derivation"
FACT = "tests/test_theorem.py::test_every_atomic_fact_passes_its_check"
WINDOW = f"{FACT}[window_count]"
FO = "tests/test_first_order.py"
FO_HAND = f"{FO}::test_step_size_condition_is_the_hand_derivation"

# (name, file, original text, mutated text, tests that must catch it)
MUTANTS = [
    ("cs: tau/2 in the W part", "theory/theorem.py",
     '"cs", gamma ** 2 * (tau * W + tau ** 2 * sigma2 / S)',
     '"cs", gamma ** 2 * (tau / 2 * W + tau ** 2 * sigma2 / S)', [f"{ADV}[cs]", f"{HAND}[cs]"]),
    ("cs: tau/2 in the noise part", "theory/theorem.py",
     '"cs", gamma ** 2 * (tau * W + tau ** 2 * sigma2 / S)',
     '"cs", gamma ** 2 * (tau * W + (tau / 2) ** 2 * sigma2 / S)', [f"{ADV}[cs]"]),
    ("martingale: tau/2 in the W part", "theory/theorem.py",
     '"martingale", gamma ** 2 * (2 * tau * W + 2 * tau * sigma2 / S)',
     '"martingale", gamma ** 2 * (2 * tau / 2 * W + 2 * tau * sigma2 / S)',
     [f"{HAND}[martingale]"]),
    ("martingale: tau/2 in the noise part", "theory/theorem.py",
     '"martingale", gamma ** 2 * (2 * tau * W + 2 * tau * sigma2 / S)',
     '"martingale", gamma ** 2 * (2 * tau * W + 2 * tau / 2 * sigma2 / S)',
     [f"{ADV}[martingale]"]),
    ("block: tau/2 in the W part", "theory/theorem.py",
     '"block", gamma ** 2 * (2 * (tau + S - 1) / S * W + 2 * tau * sigma2 / S)',
     '"block", gamma ** 2 * (2 * (tau / 2 + S - 1) / S * W + 2 * tau * sigma2 / S)',
     [f"{HAND}[block]"]),
    ("block: tau/2 in the noise part (the issue's halved noise constant)", "theory/theorem.py",
     '"block", gamma ** 2 * (2 * (tau + S - 1) / S * W + 2 * tau * sigma2 / S)',
     '"block", gamma ** 2 * (2 * (tau + S - 1) / S * W + 2 * tau / 2 * sigma2 / S)',
     [f"{ADV}[block]",
      "tests/test_lemma_adversarial.py::"
      "test_issue_17_instance_block_lemma_holds_but_its_halved_noise_constant_is_false"]),
    ("window count: tau/2", "theory/theorem.py", "  return tau * total_G",
     "  return tau / 2 * total_G", [WINDOW]),
    ("polarization: wrong sign", "theory/lemmas.py", "  summand = -a[_c] * b[_c] - sp.Rational",
     "  summand = +a[_c] * b[_c] - sp.Rational", [f"{FACT}[polarization]"]),
    ("variance decomposition: E e = 0 not used", "theory/lemmas.py",
     "expectation.subs(mu[1], 0) - m[_c] ** 2", "expectation - m[_c] ** 2",
     [f"{FACT}[variance_decomposition]"]),
    ("block expectation: telescoping to the wrong end", "theory/lemmas.py",
     "(P(e(S_)) - P(e(0)))", "(P(e(S_)) - P(e(1)))", [f"{FACT}[block_expectation]"]),
    ("noise per block: sigma2 / (2 S)", "theory/lemmas.py",
     "  target = sp.Sum(sl[_i], (_i, 1, S_)) / S_", "  target = sp.Sum(sl[_i], (_i, 1, S_)) / (2 * S_)",
     [f"{FACT}[noise_per_block]"]),
    ("first_order: mean part halved (the key constant of the 1/(L S) limit)",
     "theory/first_order.py", "  mean = tau / S ** 2 * U", "  mean = tau / S ** 2 * U / 2",
     [FO_HAND]),
    ("first_order: tau/2 in the mean part", "theory/first_order.py",
     "  mean = tau / S ** 2 * U", "  mean = tau / 2 / S ** 2 * U", [FO_HAND]),
    ("first_order: martingale part halved", "theory/first_order.py",
     "  young = (1 + alpha, 1 + 1 / alpha)", "  young = (1 + alpha, (1 + 1 / alpha) / 2)",
     [f"{FO}::test_halved_martingale_constant_is_refuted"]),
    ("first_order: tau/2 in the noise part", "theory/first_order.py",
     "  martingale = var * U + tau * s2 / S", "  martingale = var * U + tau / 2 * s2 / S",
     [FO_HAND]),
    ("exact moments: window sum one step short", "theory/lemma_exact.py",
     "G[max(0, k - tau):k].sum()", "G[max(0, k - tau + 1):k].sum()", [f"{ADV}[cs]"]),
]


def test_theory_mutants_are_caught(tmp_path):
  def probe(pkg):
    assert not (pkg / "rpd" / "theory" / "derivation.json").exists()
    assert str(pkg) in _probe(pkg)

  assert_mutants_caught(tmp_path, MUTANTS, skip=("derivation.json", "THEOREM.md"),
                        extra=("--noconftest",),  # the named tests need no JAX set-up (faster)
                        where=lambda p: p.replace("theory/", "rpd/theory/", 1), probe=probe)


def _probe(pkg):
  return subprocess.run([sys.executable, "-c", "import rpd.theory.theorem as t; print(t.__file__)"],
                        env=dict(os.environ, PYTHONPATH=str(pkg)), capture_output=True,
                        text=True, cwd=pkg).stdout
