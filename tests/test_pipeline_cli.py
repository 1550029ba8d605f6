"""``rpd pipeline``: a small run writes its files; bad input is one line and exit code 2."""
import csv
import json

import pytest

from rpd.cli import main


@pytest.mark.parametrize("argv, needle", [
    (["--devices", "2"], "--devices 2 must equal --stages 4"),
    (["--schedule", "zb-h1"], "--schedule zb-h1 is not supported by the executor"),
    (["--schedule", "nope"], "--schedule nope is unknown"),
    (["--problem", "quadratic"], "--problem quadratic is not layered"),
    (["--schedule", "gpipe", "--microbatches", "10"], "must be a multiple of --flush-every 8"),
    (["--flush-every", "2"], "pipedream does not flush"),
    (["--optimizer", "lion"], "unknown --optimizer 'lion'"),
    (["--problem", "mlp:iris"], "--problem mlp:iris: unknown mlp data set"),
    (["--text", "corpus.txt"], "--text corpus.txt: needs --problem transformer or charlm"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path):
  rc = main(["pipeline", "--problem", "mlp", "--stages", "4", "--out", str(tmp_path)] + argv)
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
  assert summary["final_loss"] < summary["initial_loss"]
  rows = list(csv.DictReader(open(out / "metrics.csv")))
  assert [int(r["microbatches"]) for r in rows][-1] == 32 and len(rows) == 5
  saved = json.load(open(out / "run.json"))
  assert saved["args"]["schedule"] == "1f1b-flush" and saved["ticks"] == summary["ticks"]
