"""Outputs of the commands: strict JSON (null for NaN/Inf), rpd train's exit code 3 on
divergence (also by growth), unique default run directories, defaults in --help, progress
lines in logs."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest

from rpd import guards, jsonout
from rpd.cli import build_parser, main


def _strict(text):
  """json.loads that refuses NaN / Infinity (as jq and JSON.parse do)."""
  def bad(c):
    raise ValueError(f"not JSON: {c}")
  return json.loads(text, parse_constant=bad)


def test_jsonout_writes_null_for_non_finite():
  obj = {"a": float("nan"), "b": [np.float32("inf"), -math.inf, 1.5], "c": np.arange(2),
         "d": np.int64(3), "e": np.bool_(True), "f": (np.float64(2.0),)}
  text = jsonout.dumps(obj)
  assert _strict(text) == {"a": None, "b": [None, None, 1.5], "c": [0, 1], "d": 3, "e": True,
                           "f": [2.0]}
  assert json.dumps(obj["a"]) == "NaN"  # what the standard library would have written


def run_cli(argv, capsys):
  try:
    code = main(argv)
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def test_train_growth_is_divergence_exit_3(tmp_path, capsys):
  """S = 1, no delay, gamma = 3 > 2/L: the top mode grows by |1 - 3| = 2 per step, so after
  24 steps the loss is finite but ~4^24 times the initial distance to f*: diverged, exit 3;
  metrics still written; the JSON is strict."""
  code, out, err = run_cli(["train", "--stages", "1", "--rule", "none", "--lr", "3", "--steps",
                            "24", "--record-every", "1", "--out", str(tmp_path), "--json"],
                           capsys)
  rec = _strict(out)
  assert code == 3 and rec["diverged"] is True
  loss = np.loadtxt(tmp_path / "metrics.csv", delimiter=",", skiprows=1)[:, 1]
  assert np.all(np.isfinite(loss))  # finite: only the growth rule can flag it
  # Independent replay of the rule: first record with |f - f*| > 1e6 |f(x0) - f*|.
  gap = np.abs(loss - rec["f_star"])
  assert rec["diverged_at"] == int(np.flatnonzero(gap > 1e6 * gap[0])[0])
  code, out, _ = run_cli(["train", "--stages", "1", "--rule", "none", "--lr", "1", "--steps",
                          "24", "--out", str(tmp_path / "ok"), "--json"], capsys)
  assert code == 0 and _strict(out)["diverged"] is False


def test_blowup_index():
  assert guards.blowup_index([1.0, 2.0, 3.0], None) is None
  assert guards.blowup_index([1.0, 2.0, 2e6 + 1], None) == 2  # 1e6 x |f0 - 0| exceeded
  assert guards.blowup_index([1.0, 2.0, float("nan")], None) == 2
  assert guards.blowup_index([0.0, 5.0, 9e5], -1.0) is None and \
      guards.blowup_index([0.0, 5.0, 1.1e6], -1.0) == 2
  # a run started at the minimizer: the floor 1e-3 (1 + |f0|) keeps noise from counting
  assert guards.blowup_index([-1.0, -0.9], -1.0) is None


def test_default_run_dir_unique_and_floats_readable(monkeypatch):
  from rpd.cli import train
  parser = build_parser()
  base = ["train", "--lr", "1e6"]
  names = {train._default_out(parser.parse_args(base + extra)) for extra in
           ([], ["--noise", "0.1"], ["--steps", "8"], ["--optimizer", "adam"], ["--dim", "8"],
            ["--problem-seed", "1"], ["--track-average"])}
  assert len(names) == 7  # every option changes the name
  one = train._default_out(parser.parse_args(base + ["--noise", "1e-06"]))
  assert "lr1e6" in one and "noise1e-6" in one and "e+" not in one
  assert train._default_out(parser.parse_args(base)) == train._default_out(
      parser.parse_args(base))  # deterministic


def test_help_shows_defaults_of_train_options():
  parser = build_parser()
  sub = next(a for a in parser._actions if a.dest == "command").choices["train"]
  text = sub.format_help()
  for opt, default in (("--lr", "0.01"), ("--steps", "4096"), ("--optimizer", "sgd")):
    action = next(a for a in sub._actions if opt in a.option_strings)
    assert f"default {default}" in action.help % {"default": action.default}, opt
  assert "exit code 3" in text or "exit code 3" in sub.description


def test_writable_dir_probe(tmp_path):
  guards.check_writable_dir(str(tmp_path / "new" / "deeper"), "--out")
  assert not (tmp_path / "new").exists()  # nothing created
  (tmp_path / "f").write_text("x")
  with pytest.raises(guards.InputError, match="not a directory"):
    guards.check_writable_dir(str(tmp_path / "f" / "sub"), "--out")
  with pytest.raises(guards.InputError, match="not writable"):
    guards.check_writable_dir("/proc/nope", "--out")


def test_progress_in_a_log_is_one_line_per_update(monkeypatch):
  from rpd.experiments import common
  buf = io.StringIO()  # not a terminal
  monkeypatch.setattr(common.sys, "stderr", buf)
  bar = common.Progress(3, "tuned_rate")
  for _ in range(3):
    bar.update()
  bar.close()
  text = buf.getvalue()
  assert "\r" not in text and text.endswith("\n")
  lines = text.splitlines()
  assert lines[0].startswith("tuned_rate") and "3/3" in lines[-1]


def test_tuned_rate_progress_label(monkeypatch):
  from rpd.experiments import stage_sweep, tuned_rate
  labels = []

  class Spy:
    def __init__(self, total, label, enabled):
      labels.append(label)

    def update(self):
      pass

    def close(self):
      pass

  monkeypatch.setattr(stage_sweep, "Progress", Spy)
  sweep = dict(name="stage_sweep", problems=[], rules=[], stages=[], gammas=[0.1], seeds=[0],
               K=16, n_records=4)
  tuned_rate.run({"name": "tuned_rate", "sweep": sweep}, None, progress=True)
  stage_sweep.run(sweep, None, progress=True)
  assert labels[0].startswith("tuned_rate") and labels[1] == "stage_sweep"


@pytest.mark.parametrize("quick", [True, False])
def test_reproduce_pins_fast_code_generation_for_the_quick_run_only(quick, tmp_path,
                                                                    monkeypatch):
  """``rpd reproduce --quick`` asks XLA:CPU for fast-compiling code (its first run is mostly
  compiling); the full run keeps XLA's default code generation (its time is running). The
  flags are pinned before any work: the stub stops the command there."""
  from rpd.experiments import common
  seen = []

  class Stop(Exception):
    pass

  def pin(fast_compile: bool = False) -> bool:
    seen.append(common.deterministic_xla_flags(fast_compile))
    raise Stop

  monkeypatch.setattr(common, "pin_xla_cpu", pin)
  with pytest.raises(Stop):
    main(["reproduce", "--out", str(tmp_path / "o"), "--no-progress"]
         + (["--quick"] if quick else []))
  fast = {"--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0"}
  assert (fast <= set(seen[0])) == quick, seen
  assert "--xla_cpu_multi_thread_eigen=false" in seen[0]
  assert not (tmp_path / "o").exists()
