"""``rpd pipeline``: bad input is one line and exit code 2; a small run writes its files; a
diverging run exits 3 (the ``rpd train`` rule); the README's example output is reproduced."""
import csv
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from rpd.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("argv, needle", [
    (["--devices", "2"], "--devices 2 must equal --stages 4"),
    (["--schedule", "nope"], "--schedule nope is unknown"),
    (["--problem", "quadratic"], "--problem quadratic is not layered"),
    (["--schedule", "gpipe", "--microbatches", "10"], "must be a multiple of --flush-every 8"),
    (["--chunks", "3"], "--chunks 3: pipedream holds one chunk per device"),
    (["--schedule", "chimera", "--stages", "3", "--flush-every", "3", "--microbatches", "6"],
     "chimera needs an even number of stages"),
    (["--stash", "everything"], "unknown --stash 'everything'"),
    (["--schedule", "pipemare", "--stash", "residuals"],
     "--stash residuals is undefined for pipemare"),
    (["--optimizer", "lion"], "unknown --optimizer 'lion'"),
    (["--problem", "mlp:iris"], "--problem mlp:iris: unknown mlp data set"),
    (["--text", "corpus.txt"], "--text corpus.txt: needs --problem transformer or charlm"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path):
  rc = main(["pipeline", "--problem", "mlp", "--stages", "4", "--microbatches", "16",
             "--out", str(tmp_path)] + argv)
  err = capsys.readouterr().err
  assert rc == 2 and needle in err and err.count("\n") == 1, err


def test_small_run_writes_metrics_and_run_json(capsys, tmp_path):
  out = tmp_path / "run"
  rc = main(["pipeline", "--problem", "mlp", "--schedule", "1f1b-flush", "--stages", "2",
             "--devices", "2", "--microbatches", "32", "--flush-every", "4", "--batch", "8",
             "--lr", "0.1", "--records", "4", "--out", str(out), "--json"])
  assert rc == 0
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert summary["microbatches"] == 32 and summary["flush_every"] == 4
  assert summary["peak_stash_per_stage"] == summary["sim_peak_act_per_stage"] == [2, 1]
  assert summary["final_loss"] < summary["initial_loss"] and not summary["diverged"]
  rows = list(csv.DictReader(open(out / "metrics.csv")))
  assert [int(r["microbatches"]) for r in rows][-1] == 32 and len(rows) == 5
  saved = json.load(open(out / "run.json"))
  assert saved["args"]["schedule"] == "1f1b-flush" and saved["ticks"] == summary["ticks"]


def test_diverging_run_exits_3(capsys, tmp_path):
  """The loss blows up (rpd.guards.blowup_index, the rule of ``rpd train``): exit code 3,
  ``diverged`` true, the metrics still written."""
  rc = main(["pipeline", "--problem", "mlp", "--schedule", "1f1b-flush", "--stages", "2",
             "--microbatches", "16", "--flush-every", "4", "--batch", "8", "--lr", "1e8",
             "--records", "2", "--out", str(tmp_path / "d"), "--json"])
  summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  assert rc == 3 and summary["diverged"] and summary["diverged_at_record"] is not None
  assert (tmp_path / "d" / "metrics.csv").exists()


def _readme_example():
  text = (ROOT / "README.md").read_text()
  block = re.search(r"```\n(rpd pipeline --problem mlp --schedule zb-v .*?)```", text, re.S)
  assert block, "README pipeline example not found"
  lines = block.group(1).strip().splitlines()
  return lines[0], lines[-1]


def test_readme_example_output_is_reproduced(tmp_path):
  """The README's example command, run as printed (a fresh process, float32 as the CLI),
  prints the README's losses and peaks (wall seconds aside)."""
  cmd, last = _readme_example()
  argv = cmd.split()[2:] + ["--out", str(tmp_path / "r"), "--quiet"]
  argv = [a for a in argv if a != "\\"]
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  env.pop("JAX_ENABLE_X64", None)
  out = subprocess.run([sys.executable, "-m", "rpd", "pipeline", *argv], env=env,
                       capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr
  got = out.stdout.strip().splitlines()[-1]
  strip = lambda s: re.sub(r"; [0-9.]+ s; metrics in \S+", "", s)  # noqa: E731
  assert strip(got) == strip(last)
