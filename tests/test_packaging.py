"""Packaging: theory/ and experiments/ install as rpd.theory and rpd.experiments only."""
import pathlib
import tomllib
import importlib.util

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _config():
  return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
  """A new subpackage that is not in pyproject's list would be missing from a wheel."""
  cfg = _config()
  listed = set(cfg["packages"])
  found = set()
  for top, name in cfg["package-dir"].items():
    base = ROOT / name
    for init in base.rglob("__init__.py"):
      rel = init.parent.relative_to(base).parts
      found.add(".".join((top,) + rel))
  assert found == listed


def test_no_generic_top_level_names():
  cfg = _config()
  assert all(p == "rpd" or p.startswith("rpd.") for p in cfg["packages"])
  assert importlib.util.find_spec("rpd.theory.delay") is not None
  assert importlib.util.find_spec("rpd.experiments.configs") is not None
  # The folders are not importable under their generic names from an installed rpd.
  assert cfg["package-dir"]["rpd.theory"] == "theory"
  assert cfg["package-dir"]["rpd.experiments"] == "experiments"
