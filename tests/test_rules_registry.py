"""The rule registry: one file makes a rule; the README table, the CLI help and the common
suite all come from the registry.

``test_one_file_makes_a_rule`` copies the package to a temporary folder, adds one rule file
there and nothing else, and finds the rule in ``rpd train --help``, trains with it through
``rpd train --rule``, and runs the common suite's tests on it (they pass).
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

from rpd.rules import RULES, get_rule
from rpd.rules.registry import markdown_table, rules_help

from mutants import copy_package

ROOT = pathlib.Path(__file__).resolve().parents[1]

AGE_RULE = '''"""``agecache:TAU``: every block read TAU iterations stale, blocks in cyclic order."""
import jax.numpy as jnp

from rpd.rules.base import IDENTITY, Hook, IterationRule, frozen, keep_hook
from rpd.rules.registry import Param, register_rule


@register_rule("agecache", params=(Param("tau", int, lo=0, meta="TAU"),),
               help="cyclic blocks, every read TAU iterations stale (a one-file rule)",
               examples=("agecache:2",))
@frozen
class AgeCache(IterationRule):
  S: int
  tau: int
  name: str = "agecache"
  hook: Hook = IDENTITY

  @property
  def tau_max(self):
    return self.tau

  def zero_delay(self):
    return keep_hook(self, AgeCache(self.S, 0))

  def select(self, state, key, k):
    return (k % self.S).astype(jnp.int32), jnp.full((self.S,), self.tau, jnp.int32), state

  def reference_select(self, state, key, k):
    return k % self.S, [self.tau] * self.S, state
'''


def test_readme_rules_table_is_generated_and_current():
  readme = (ROOT / "README.md").read_text()
  start = readme.index("<!-- rules table:")
  end = readme.index("<!-- end rules table -->")
  body = readme[readme.index("\n", start) + 1:end]
  assert [l.strip() for l in body.strip().splitlines()] == markdown_table().splitlines(), (
      "README rules table is stale: regenerate with python -m rpd.rules")


def test_cli_help_lists_every_rule(capsys):
  from rpd.cli import main
  with pytest.raises(SystemExit):
    main(["train", "--help"])
  out = capsys.readouterr().out
  for entry in RULES.values():
    assert re.search(rf"^  {re.escape(entry.grammar)} ", out, re.M), entry.grammar
  assert rules_help().splitlines()[1] in out


@pytest.mark.parametrize("spec,canonical", [("geom:0.30:6", "geom:0.3:6"),
                                            ("dc:0.50:rpd", "dc:0.5:rpd"),
                                            ("adapt:1p:rpd", "adapt:rpd"),
                                            ("pipemare:0.3:rpd", "pipemare:0:0.3:rpd"),
                                            ("2bw:1", "2bw")])
def test_canonical_spec_from_the_registry(spec, canonical):
  rule = get_rule(spec, 4)
  assert rule.spec == canonical and get_rule(canonical, 4) == rule


@pytest.mark.parametrize("spec,bad", [("geom:1.5:3", "1.5"), ("geom:0.5", "geom:0.5"),
                                      ("constant:2:7", "7"), ("adapt:zz", "zz"),
                                      ("pipemare:0:1.0:rpd", "1.0")])
def test_bad_specs_name_the_bad_value(spec, bad):
  with pytest.raises(ValueError, match=re.escape(bad)):
    get_rule(spec, 4)


def test_one_file_makes_a_rule(tmp_path):
  pkg = copy_package(tmp_path)
  (pkg / "rpd" / "rules" / "agecache.py").write_text(AGE_RULE)
  env = dict(os.environ, PYTHONPATH=str(pkg), JAX_PLATFORMS="cpu", PYTHONDONTWRITEBYTECODE="1")
  env.pop("XLA_FLAGS", None)
  py = [sys.executable]
  helped = subprocess.run(py + ["-m", "rpd", "train", "--help"], cwd=pkg, env=env,
                          capture_output=True, text=True)
  assert helped.returncode == 0 and "agecache:TAU" in helped.stdout, helped.stderr[-2000:]
  trained = subprocess.run(py + ["-m", "rpd", "train", "--rule", "agecache:2", "--stages", "2",
                                 "--dim", "4", "--steps", "8", "--json", "--out",
                                 str(tmp_path / "run")], cwd=pkg, env=env,
                           capture_output=True, text=True)
  assert trained.returncode == 0 and '"rule": "agecache:2"' in trained.stdout, (
      trained.stdout[-2000:] + trained.stderr[-2000:])
  suite = subprocess.run(py + ["-m", "pytest", "-o", "addopts=", "-q", "-p", "no:cacheprovider",
                               "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                               str(ROOT / "tests" / "test_rules_common.py"), "-k", "agecache"],
                         cwd=pkg, env=env, capture_output=True, text=True, timeout=600)
  assert suite.returncode == 0, suite.stdout[-3000:]
  passed = int(re.search(r"(\d+) passed", suite.stdout).group(1))
  assert passed >= 7, suite.stdout[-2000:]  # every common test ran on the new rule
