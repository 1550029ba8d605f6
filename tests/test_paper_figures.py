"""The committed paper_figures/ were made by the committed code (see rpd.experiments.stamp).

Fails when any source file that the run which wrote paper_figures/ had loaded has changed
since, when results.csv or README.md were edited by hand, or when an experiment has no
figure there. Fix: ``rpd reproduce --quick`` (writes paper_figures/), then commit it.
"""
import hashlib
import json
import os
import pathlib

from rpd.cli.reproduce import EXPERIMENTS

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIGS = pathlib.Path(os.environ.get("RPD_PAPER_FIGURES", ROOT / "paper_figures"))  # override: checks
FIX = "stale paper_figures/: run `rpd reproduce --quick` and commit its output"


def _sha(path):
  return hashlib.sha256(path.read_bytes()).hexdigest()


def _stamp():
  path = FIGS / "SOURCES.json"
  assert path.exists(), f"{FIX} (no SOURCES.json)"
  return json.loads(path.read_text())


def test_committed_figures_match_committed_code():
  stamp = _stamp()
  assert stamp["mode"] == "quick", FIX
  changed = [rel for rel, h in stamp["sources"].items()
             if not (ROOT / rel).exists() or _sha(ROOT / rel) != h]
  assert not changed, f"{FIX}; changed since: {', '.join(changed)}"
  # The stamp covers the code that shapes the figures (not an empty or partial list).
  for rel in ("rpd/engine.py", "rpd/cli/reproduce.py", "experiments/common.py",
              *(f"experiments/{n}.py" for n in EXPERIMENTS),
              *(f"experiments/configs/{n}.py" for n in EXPERIMENTS)):
    assert rel in stamp["sources"], f"{FIX} ({rel} not in SOURCES.json)"


def test_committed_outputs_are_those_the_run_wrote():
  stamp = _stamp()
  for name, h in stamp["outputs"].items():
    assert _sha(FIGS / name) == h, f"{FIX} ({name} differs from what the run wrote)"
  assert sorted(stamp["experiments"]) == sorted(EXPERIMENTS), FIX
  for name in EXPERIMENTS:
    for ext in ("png", "pdf"):
      assert (FIGS / f"{name}.{ext}").stat().st_size > 1000, f"{FIX} ({name}.{ext})"
