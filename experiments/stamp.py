"""Which code made the figures: a stamp written next to them, and a check that it is current.

``rpd reproduce`` ends by writing ``OUT/SOURCES.json``: the mode, the experiments, the
SHA-256 of ``results.csv`` and ``README.md`` as written, and the SHA-256 of every source file
of the repository that the run had loaded (``rpd/``, ``experiments/``, ``theory/``; of the
command line only ``rpd/cli/reproduce.py``, which writes the CSV and the README). The
committed ``paper_figures/`` is current exactly when every file listed there still has its
hash (``tests/test_paper_figures.py``): a change to any code that computes, fits or draws a
figure makes that test fail until ``rpd reproduce --quick`` is run again and its output
committed.

Why a hash and not a recomputed row: recomputing even one row per experiment needs float32
JAX in a fresh process (seconds per experiment, and it checks one row of hundreds), while the
hash is exact, takes milliseconds, and covers every line that can move a number or a label.
The price is that an edit that changes no number (a docstring) also asks for a rerun.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAMP = "SOURCES.json"
_DIRS = ("rpd", "experiments", "theory")


def sha256(path: str) -> str:
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def loaded_sources() -> list[str]:
  """Repository-relative paths of the loaded modules' files under rpd/, experiments/, theory/
  (not the command line's modules other than ``rpd/cli/reproduce.py``), sorted."""
  out = set()
  for mod in list(sys.modules.values()):
    f = getattr(mod, "__file__", None)
    if not f or not f.endswith(".py"):
      continue
    rel = os.path.relpath(os.path.realpath(f), ROOT)
    if rel.split(os.sep)[0] not in _DIRS:
      continue
    if rel.startswith(os.path.join("rpd", "cli")) and rel != os.path.join("rpd", "cli",
                                                                          "reproduce.py"):
      continue
    out.add(rel.replace(os.sep, "/"))
  return sorted(out)


def write_stamp(out_dir: str, mode: str, experiments: list[str]) -> str:
  """Write ``OUT/SOURCES.json`` (see the module docstring); returns its path."""
  from rpd.experiments.common import git_commit
  stamp = {
      "command": f"rpd reproduce{' --quick' if mode == 'quick' else ''} --out {out_dir}",
      "mode": mode, "experiments": experiments, "commit": git_commit(),
      "outputs": {n: sha256(os.path.join(out_dir, n)) for n in ("results.csv", "README.md")},
      "sources": {rel: sha256(os.path.join(ROOT, rel)) for rel in loaded_sources()},
  }
  path = os.path.join(out_dir, STAMP)
  with open(path, "w") as f:
    json.dump(stamp, f, indent=1, sort_keys=True)
    f.write("\n")
  return path
