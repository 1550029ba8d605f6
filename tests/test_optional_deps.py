"""A missing optional dependency is one line naming the extra that installs it (exit 2).

Each case runs ``rpd`` in a subprocess whose ``sys.modules`` marks the module as absent
(``sys.modules[name] = None`` makes ``import name`` raise ImportError, as in a venv without
the extra), so the test needs no second environment.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from rpd.optional import EXTRAS, message

RUN = ("import sys\n"
       "for name in sys.argv[1].split(','):\n"
       "  sys.modules[name] = None\n"
       "from rpd.cli import main\n"
       "sys.exit(main(sys.argv[2:]))\n")


@pytest.mark.parametrize("hidden, argv, needle", [
    ("sklearn", ["train", "--problem", "mlp", "--steps", "4"], "rpd[data]"),
    ("sklearn", ["train", "--problem", "logistic:breast_cancer", "--steps", "4"], "rpd[data]"),
    ("sklearn", ["pipeline", "--problem", "mlp", "--stages", "2", "--microbatches", "4",
                 "--quiet"], "rpd[data]"),
    # a declared dependency gone (a broken install): still one line, naming the module
    ("matplotlib", ["schedules", "-P", "2", "-M", "2", "--schedule", "gpipe", "--plot",
                    "{t}/x.png"], "'matplotlib'"),
])
def test_missing_dependency_is_one_line(hidden, argv, needle, tmp_path):
  argv = [a.replace("{t}", str(tmp_path)) for a in argv]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-c", RUN, hidden, *argv, *(
      ["--out", str(tmp_path / "run")] if argv[0] in ("train", "pipeline") else [])],
                     cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1, r.stderr[-2000:]
  assert needle in lines[0] and "Traceback" not in r.stderr, lines[0]
  assert not (tmp_path / "run").exists() and not (tmp_path / "x.png").exists()


def test_every_extra_is_declared():
  """Each extra named in rpd.optional.EXTRAS exists in pyproject.toml with that package."""
  import tomllib
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    extras = tomllib.load(f)["project"]["optional-dependencies"]
  for module, (dist, extra) in EXTRAS.items():
    assert any(req.startswith(dist) for req in extras[extra]), (module, dist, extra)
    assert f"rpd[{extra}]" in message(module, "x")


def test_scipy_is_declared():
  """scipy (theory/stability.py, zb-auto's exact step) is a declared dependency."""
  import tomllib
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with open(os.path.join(root, "pyproject.toml"), "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
  assert any(d.startswith("scipy") for d in deps)
