"""``rpd schedules`` CLI and the generated claims check."""
import json
import pathlib

import pytest

from rpd.cli import main
from rpd.schedules import SCHEDULES
from rpd.schedules.claims import claims, markdown

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_json_has_every_schedule_and_keys(capsys):
  assert main(["schedules", "--stages", "4", "--microbatches", "8", "--json"]) == 0
  rows = json.loads(capsys.readouterr().out)
  assert [r["schedule"] for r in rows] == list(SCHEDULES)
  for r in rows:
    assert "skipped" not in r, r
    for key in ("schedule", "makespan", "bubble_ratio", "peak_activations",
                "weight_versions", "tau_max", "semantics", "tau"):
      assert key in r
  by = {r["schedule"]: r for r in rows}
  assert by["gpipe"]["bubble_ratio"] == pytest.approx(3 / 11)
  assert by["pipedream"]["tau_max"] > 0 and by["gpipe"]["tau_max"] == 0
  assert "tau_backward" in by["pipemare"]


def test_inapplicable_schedules_are_skipped_with_reason(capsys):
  assert main(["schedules", "-P", "4", "-M", "6", "-V", "1", "--json"]) == 0
  by = {r["schedule"]: r for r in json.loads(capsys.readouterr().out)}
  assert "V >= 2" in by["interleaved-1f1b"]["skipped"]
  assert main(["schedules", "-P", "4", "-M", "6", "-V", "2"]) == 0
  assert "multiple of P" in capsys.readouterr().out
  assert main(["schedules", "-P", "6", "-M", "2", "--json"]) == 0
  by = {r["schedule"]: r for r in json.loads(capsys.readouterr().out)}
  assert "not ready" in by["pipedream-2bw"]["skipped"]


@pytest.mark.parametrize("argv", [
    ["-P", "0", "-M", "4"],
    ["-P", "x", "-M", "4"],
    ["-P", "4", "-M", "4", "--durations", "F=0"],
    ["-P", "4", "-M", "4", "--durations", "Q=1"],
    ["-P", "4", "-M", "4", "--durations", "B=abc"],
    ["-P", "4", "-M", "4", "--latency", "-1"],
    ["-P", "4", "-M", "4", "--schedule", "nope"],
])
def test_bad_input_exits_2_with_one_line(argv, capsys):
  try:
    rc = main(["schedules", *argv])
  except SystemExit as e:
    rc = e.code
  assert rc == 2
  err = capsys.readouterr().err.strip()
  assert err and "\n" not in err and "Traceback" not in err


def test_plot_is_written(tmp_path, capsys):
  out = tmp_path / "t.png"
  assert main(["schedules", "-P", "3", "-M", "6", "--durations", "F=1,B=1,W=0.5",
               "--latency", "0.1", "--plot", str(out)]) == 0
  assert out.stat().st_size > 10_000
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_claims_doc_is_up_to_date():
  path = ROOT / "docs" / "claims.md"
  assert path.read_text() == markdown(), (
      "docs/claims.md is stale: run `python -m rpd.schedules.claims docs/claims.md`")


def test_claims_rows_have_verdicts():
  rows = claims()
  assert len(rows) >= 10
  for r in rows:
    assert r["verdict"] and r["measured"] and r["why"]


def test_latency_without_steady_delay_table_is_flagged_not_crashed(capsys):
  assert main(["schedules", "-P", "4", "-M", "8", "--latency", "0.5", "--durations",
               "F=1,B=2,W=0.5", "--json"]) == 0
  by = {r["schedule"]: r for r in json.loads(capsys.readouterr().out)}
  assert by["pipedream"]["tau_steady"] is False and by["pipedream"]["tau_max"] > 0
  assert by["gpipe"]["tau_steady"] is True
