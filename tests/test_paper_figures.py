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


# --- A fresh run gives the committed numbers (issue 21) ---------------------------------------
# Rows of results.csv recomputed from scratch in a fresh process with the command line's
# settings (float32, one device, the XLA:CPU flags of rpd.experiments.common.pin_xla_cpu) and
# compared with the committed ones: a subset of pd_vs_localsgd (the rows of the objectives in
# _FRESH at S = 2, with every configuration those rows are chosen from), which runs in a few
# seconds. With the pinned flags of session 9 these rows had the same bits on the three AVX2
# machines measured and at any thread count (other rows did not: README.md, "The same numbers
# on every machine"). The tolerance allows only for the CSV's rounding to 6 significant
# digits: every number within _RTOL relative, and the excess f - f* (a difference of two
# rounded losses) within _RTOL * |f*| absolute; chosen step sizes, H and winners exactly.
# The fast code generation of session 11 (measured on one machine only) moved the excess of
# these rows by less than that (7.04977e-06 -> 7.0535e-06 at S = 2 on the exact quadratic,
# against 1e-5 |f*| = 3e-7), so this test passes with or without it (checked).
_FRESH = ("quadratic, exact gradients", "logistic regression")
_FRESH_S = 2
_RTOL = 1e-5
_CHILD = r"""
import json, sys, tempfile
from rpd import cache
from rpd.experiments.common import ResultsStore, pin_xla_cpu
assert pin_xla_cpu(fast_compile=True)
cache.enable(create=False)
from rpd.experiments import pd_vs_localsgd as E
from rpd.experiments.configs.pd_vs_localsgd import get_config
labels, S = json.loads(sys.argv[1]), int(sys.argv[2])
cfg = get_config(True)
cfg["problems"] = [dict(p, stages=[S]) for p in cfg["problems"] if p["label"] in labels]
out = tempfile.mkdtemp()
store = ResultsStore(out + "/results/pd_vs_localsgd.quick.jsonl")
E.run(cfg, store, progress=False)
print(json.dumps(E.plot(cfg, store, out)["table"]))
"""


def _committed_rows(labels, S):
  import csv
  with open(FIGS / "results.csv", newline="") as f:
    return {r["problem"]: r for r in csv.DictReader(f)
            if r["experiment"] == "pd_vs_localsgd" and r["problem"] in labels
            and r["S"] == str(S)}


def _fresh_rows(labels, S):
  import subprocess
  import sys
  env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
  proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(list(labels)), str(S)],
                        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
  assert proc.returncode == 0, proc.stderr[-2000:]
  rows = json.loads(proc.stdout.strip().splitlines()[-1])
  return {r["problem"]: r for r in rows if r.get("S") == S}


def _close(a: float, b: float, atol: float) -> bool:
  return abs(a - b) <= _RTOL * max(abs(a), abs(b)) + atol


def compare_rows(committed: dict, fresh: dict) -> list[str]:
  """Differences beyond the stated tolerance between committed (CSV text) and fresh rows."""
  bad = []
  for label, c in committed.items():
    f = fresh.get(label)
    if f is None:
      bad.append(f"{label}: no fresh row")
      continue
    f_star = abs(float(c["f_star"])) if c.get("f_star") else 0.0
    for col, text in c.items():
      if text == "" or col in ("experiment", "problem"):
        continue
      v = f.get(col)
      try:
        want = float(text)
      except ValueError:  # winner, excess_measure
        if str(v) != text:
          bad.append(f"{label}: {col} {v!r} != committed {text!r}")
        continue
      if isinstance(v, bool) or text in ("True", "False"):
        if str(v) != text:
          bad.append(f"{label}: {col} {v!r} != committed {text!r}")
        continue
      atol = _RTOL * f_star if col.endswith("_excess") else 0.0
      if v is None or not _close(float(v), want, atol):
        bad.append(f"{label}: {col} {v!r} != committed {text} (rtol {_RTOL:g}, atol {atol:.3g})")
  return bad


def test_compare_rows_catches_a_change_in_the_sixth_digit():
  c = {"q": {"experiment": "pd_vs_localsgd", "problem": "q", "S": "2", "f_star": "-0.0306122",
             "ls_final": "-0.0305909", "ls_excess": "2.12841e-05", "winner": "PipeDream",
             "ls_gamma_at_grid_edge": "True", "ls_H": "8"}}
  same = {"q": dict(S=2, f_star=-0.03061224, ls_final=-0.03059092, ls_excess=2.128412e-05,
                    winner="PipeDream", ls_gamma_at_grid_edge=True, ls_H=8)}
  assert compare_rows(c, same) == []
  assert compare_rows(c, {"q": dict(same["q"], ls_final=-0.0305929)})  # 6.5e-5 relative
  assert compare_rows(c, {"q": dict(same["q"], ls_excess=2.2e-05)})
  assert compare_rows(c, {"q": dict(same["q"], winner="LocalSGD")})
  assert compare_rows(c, {"q": dict(same["q"], ls_H=1)})
  assert compare_rows(c, {"q": dict(same["q"], ls_gamma_at_grid_edge=False)})
  assert compare_rows(c, {})


def test_fresh_run_gives_the_committed_results_csv_rows():
  committed = _committed_rows(_FRESH, _FRESH_S)
  assert sorted(committed) == sorted(_FRESH), f"{FIX} (rows missing from results.csv)"
  bad = compare_rows(committed, _fresh_rows(_FRESH, _FRESH_S))
  assert not bad, "a fresh run differs from the committed results.csv:\n" + "\n".join(bad)
