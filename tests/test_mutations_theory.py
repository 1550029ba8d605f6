"""Mutation check for the theory: tau -> tau/2 in any single place must fail a named test,
and so must a wrong step in each of the four general (symbolic-dimension) proofs.

As in ``tests/test_mutations.py``: each mutant is a text substitution in one file of a copy
of the package (``theory`` placed at ``rpd/theory``), and named tests run on the copy in a
subprocess and must fail (pytest exit code 1). The copy has NO ``derivation.json`` and no
``THEOREM.md``: the named tests never read them, so regenerating them after the edit (what a
developer does) cannot make a mutant pass. The unmutated copy must pass the same tests.
"""
import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import sys

from test_mutations import LEAN

ROOT = pathlib.Path(__file__).resolve().parents[1]
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


def _copy(tmp: pathlib.Path) -> pathlib.Path:
  dst = tmp / "pkg"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "derivation.json", "THEOREM.md")
  shutil.copytree(ROOT / "rpd", dst / "rpd", ignore=ignore)
  shutil.copytree(ROOT / "theory", dst / "rpd" / "theory", ignore=ignore)
  shutil.copytree(ROOT / "experiments", dst / "rpd" / "experiments", ignore=ignore)
  return dst


def _pytest(pkg: pathlib.Path, tests):
  env = dict(os.environ, PYTHONPATH=str(pkg), JAX_PLATFORMS="cpu",
             PYTHONDONTWRITEBYTECODE="1")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", *LEAN,
                         "--noconftest",  # the named tests need no JAX set-up (faster)
                         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                         *[str(ROOT / t) for t in tests]],
                        cwd=pkg, env=env, capture_output=True, text=True, timeout=600)


def _mutant(tmp: pathlib.Path, name, path, old, new, tests):
  pkg = _copy(tmp)
  f = pkg / path.replace("theory/", "rpd/theory/", 1)
  text = f.read_text()
  assert text.count(old) == 1, f"{name}: the original text must occur once in {path}"
  f.write_text(text.replace(old, new))
  return _pytest(pkg, tests)


def test_theory_mutants_are_caught(tmp_path):
  control_pkg = _copy(tmp_path / "control")
  assert not (control_pkg / "rpd" / "theory" / "derivation.json").exists()
  all_tests = sorted({t for m in MUTANTS for t in m[4]})
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    control = pool.submit(_pytest, control_pkg, all_tests)
    runs = {m[0]: pool.submit(_mutant, tmp_path / f"m{i}", *m) for i, m in enumerate(MUTANTS)}
    control = control.result()
    assert control.returncode == 0, control.stdout[-3000:] + control.stderr[-2000:]
    assert str(control_pkg) in _probe(control_pkg)
    survivors = []
    for name, fut in runs.items():
      proc = fut.result()
      if proc.returncode != 1:
        survivors.append(f"{name}: exit {proc.returncode}\n{proc.stdout[-1500:]}")
  assert not survivors, "\n\n".join(survivors)


def _probe(pkg):
  return subprocess.run([sys.executable, "-c", "import rpd.theory.theorem as t; print(t.__file__)"],
                        env=dict(os.environ, PYTHONPATH=str(pkg)), capture_output=True,
                        text=True, cwd=pkg).stdout
