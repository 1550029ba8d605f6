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


# ------------------------------------------------------------------ --pareto (the chooser)
PARETO = ["schedules", "-P", "4", "-M", "8", "--durations", "F=1,B=1,W=1", "--pareto",
          "--schedule", "gpipe", "--schedule", "1f1b-flush", "--schedule", "zb-h1",
          "--schedule", "zb-h2", "--schedule", "pipedream"]


def test_pareto_case_known_by_hand(capsys):
  """P=4, M=8, F=B=W=1, by hand: GPipe and 1F1B-flush makespan (M+P-1)(F+B+W) = 33, bubble
  3/11, activations M=8 and P=4; ZB-H1 makespan 3M + (P-1)(F+B-W) = 27, bubble 1/9,
  activations 4; ZB-H2 makespan 27 too (the parallelogram does not shorten one flushed
  batch), activations 2P-1 = 7; PipeDream no bubble, activations 4, 4 weight versions,
  3 versions of delay. So: GPipe dominated by 1F1B-flush, ZB-H1 and ZB-H2, 1F1B-flush and ZB-H2
  by ZB-H1, frontier {ZB-H1, PipeDream}. With --memory act=6: GPipe and ZB-H2 are over
  budget; with act=6,weights=2 PipeDream too."""
  assert main(PARETO + ["--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  by = {r["schedule"]: r for r in out["rows"]}
  assert by["gpipe"]["bubble"] == pytest.approx(3 / 11)
  assert by["1f1b-flush"]["bubble"] == pytest.approx(3 / 11)
  assert by["zb-h1"]["bubble"] == pytest.approx(1 / 9)
  assert by["zb-h2"]["bubble"] == pytest.approx(1 / 9)
  assert [by[n]["activations"] for n in by] == [8, 4, 4, 7, 4]
  assert by["pipedream"]["weights"] == 4 and by["pipedream"]["staleness"] == 3
  assert by["pipedream"]["bubble"] == pytest.approx(0.0, abs=1e-12)
  assert sorted(by["gpipe"]["dominated_by"]) == ["1f1b-flush", "zb-h1", "zb-h2"]
  assert by["1f1b-flush"]["dominated_by"] == ["zb-h1"]
  assert by["zb-h2"]["dominated_by"] == ["zb-h1"]
  assert {n for n, r in by.items() if r["status"] == "frontier"} == {"zb-h1", "pipedream"}
  assert "block updates" in out["delay_convention"]
  assert main(PARETO + ["--memory", "act=6", "--json"]) == 0
  by = {r["schedule"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
  assert {n for n, r in by.items() if r["status"] == "over budget"} == {"gpipe", "zb-h2"}
  assert by["1f1b-flush"]["status"] == "dominated"
  assert main(PARETO + ["--memory", "act=6,weights=2", "--max-staleness", "0"]) == 0
  text = capsys.readouterr().out
  assert "pipedream" in text and "over budget (weights, staleness)" in text


def test_pareto_default_and_plot(tmp_path, capsys):
  """The issue's command: every schedule plus the automatic one at the activation budget."""
  out = tmp_path / "f.png"
  assert main(["schedules", "--pareto", "--stages", "8", "--microbatches", "32",
               "--durations", "F=1,B=2,W=1", "--memory", "act=10", "--json",
               "--plot", str(out)]) == 0
  rows = json.loads(capsys.readouterr().out)["rows"]
  names = [r["schedule"] for r in rows]
  assert set(SCHEDULES) <= set(names) and "zb-auto(limit=10)" in names
  live = [r for r in rows if "skipped" not in r]
  assert all(r["status"] in ("frontier", "dominated", "over budget") for r in live)
  assert any(r["status"] == "frontier" for r in live)
  for r in live:  # a frontier row is dominated by nobody within budget
    if r["status"] == "frontier":
      assert not r["dominated_by"]
  assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_dominance_rule():
  from rpd.schedules.pareto import dominates
  a = {"bubble": 0.1, "activations": 4, "weights": 1, "staleness": 0}
  assert dominates(a, dict(a, activations=5))
  assert not dominates(a, a)
  assert not dominates(a, dict(a, bubble=0.2, staleness=-1))


@pytest.mark.parametrize("argv", [
    ["--durations", "F=1,F=2"],
    ["--pareto", "--memory", "act=0"],
    ["--pareto", "--memory", "foo=1"],
    ["--pareto", "--memory", "act=1,act=2"],
    ["--pareto", "--max-staleness", "-1"],
    ["--memory", "act=3"],
])
def test_pareto_bad_input_exits_2_with_one_line(argv, capsys):
  try:
    rc = main(["schedules", "-P", "4", "-M", "8", *argv])
  except SystemExit as e:
    rc = e.code
  assert rc == 2
  err = capsys.readouterr().err.strip()
  assert err and "\n" not in err and "Traceback" not in err


def test_pipedream_table_depends_on_the_durations_and_both_commands_say_which(capsys):
  """The issue's numbers: PipeDream S = 6, tau_max 33 with B = F, 34 with B = 2F."""
  assert main(["delays", "-S", "6", "--json"]) == 0
  d = json.loads(capsys.readouterr().out)
  assert d["tau_max"] == 33 and d["durations"]["F"] == d["durations"]["B"]
  assert "block updates" in d["delay_convention"]
  assert main(["schedules", "-P", "6", "-M", "12", "--schedule", "pipedream", "--durations",
               "F=1,B=1,W=0", "--json"]) == 0
  assert json.loads(capsys.readouterr().out)[0]["tau_max"] == 33
  assert main(["schedules", "-P", "6", "-M", "12", "--schedule", "pipedream", "--durations",
               "F=1,B=2,W=0"]) == 0
  text = capsys.readouterr().out
  assert "'B': 2.0" in text and "tau_ver" in text and "Convention: tau: block updates" in text
  assert main(["schedules", "-P", "6", "-M", "12", "--schedule", "pipedream", "--durations",
               "F=1,B=2,W=0", "--json"]) == 0
  r = json.loads(capsys.readouterr().out)[0]
  assert r["tau_max"] == 34 and r["tau_versions_max"] == 5 and "delay_convention" in r


@pytest.fixture
def no_simulation(monkeypatch):
  """Make simulating any schedule fail the test: a check that must come before the work is
  shown to come before it by construction, not by a time limit (a loaded machine made a
  0.5 s limit fail once)."""
  import rpd.schedules.metrics as metrics
  from rpd.schedules import SCHEDULES

  def refuse(*a, **k):
    raise AssertionError("a schedule was simulated before the input was checked")

  monkeypatch.setattr(metrics, "schedule_metrics", refuse)
  for cls in {type(s) for s in SCHEDULES.values()}:  # some override timed (Chimera, DualPipe-V)
    monkeypatch.setattr(cls, "timed", refuse)


@pytest.mark.parametrize("argv, needle", [
    (["--plot", "{t}/missing/x.png"], "does not exist"),
    (["--plot", "{t}/x.txt"], "unknown file type"),
    (["--plot", "{t}"], "is a folder"),
    (["--pareto", "--plot", "{t}/missing/f.png"], "does not exist"),
    (["--pareto", "--memory", "act=0.5"], "0.5"),
    (["--pareto", "--memory", "weights=0.9"], "0.9"),
    (["--exact", "0"], "--exact"),
    (["--exact", "61"], "--exact"),
])
def test_output_paths_and_budgets_checked_before_any_work(argv, needle, tmp_path, capsys,
                                                         no_simulation):
  """P = 16, M = 128 takes seconds of simulation (Chimera alone, P M = 2048, several; zb-auto's
  P^3 M = 2^19 is refused by its own size check); a bad --plot path or budget is refused
  before any schedule is simulated (``no_simulation``: simulating fails the test), and
  nothing is written."""
  argv = [a.replace("{t}", str(tmp_path)) for a in argv]
  try:
    rc = main(["schedules", "-P", "16", "-M", "128", *argv])
  except SystemExit as e:
    rc = e.code
  err = capsys.readouterr().err.strip()
  assert rc == 2 and "\n" not in err and needle in err, err
  assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("P, M, V, needle", [(257, 4, 1, "257"), (200, 4, 2, "400 blocks"),
                                             (4, 5000, 1, "5000"), (16, 4096, 2, "131072")])
def test_sizes_refused_at_once(P, M, V, needle, capsys, no_simulation):
  """Too large a size is refused before any schedule is simulated."""
  rc = main(["schedules", "-P", str(P), "-M", str(M), "-V", str(V)])
  err = capsys.readouterr().err.strip()
  assert rc == 2 and "\n" not in err and needle in err, err


def test_zb_auto_search_refused_beyond_its_size():
  from rpd.schedules import ScheduleNotApplicable
  from rpd.schedules.zb_auto import ZBAuto
  with pytest.raises(ScheduleNotApplicable, match="P\\^3 M"):
    ZBAuto().check(64, 4)  # 68 s of CPU measured
  ZBAuto().check(16, 32)   # 2^17: allowed


def test_pareto_rows_state_both_delays_and_their_convention(capsys):
  assert main(["schedules", "-P", "4", "-M", "8", "--pareto", "--json",
               "--schedule", "pipedream", "--schedule", "pipedream-2bw",
               "--schedule", "zb-h1"]) == 0
  rows = {r["schedule"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
  # by hand: PipeDream's delay in versions is S - 1 on block 0 (3 here); 2BW's is one
  # version; a flushing schedule has none.
  assert rows["pipedream"]["tau_versions_max"] == 3
  assert rows["pipedream-2bw"]["tau_versions_max"] == 1
  assert rows["zb-h1"]["tau_versions_max"] == 0 and rows["zb-h1"]["tau_max"] == 0
  assert all("block updates" in r["delay_convention"] for r in rows.values())


@pytest.mark.parametrize("name, S, expected", [("pipedream", 5, 4), ("pipedream", 8, 7),
                                               ("pipedream-2bw", 4, 1), ("gpipe", 4, 0)])
def test_delays_json_has_tau_versions_max(name, S, expected, capsys):
  """``rpd delays --json`` states both delays: PipeDream S - 1 versions (hand derivation:
  block 0's forward reads, then the S - 1 later microbatches already in flight update it
  before its own update), 2BW one version, synchronous none."""
  assert main(["delays", "-S", str(S), "--schedule", name, "--json"]) == 0
  d = json.loads(capsys.readouterr().out)
  assert d["tau_versions_max"] == expected and "tau_max" in d


def test_exact_step_prints_its_bound(capsys):
  """P = 2, M = 4, F = 2, B = 3, W = 1 at the default limit 2P - 1 = 3: 27 is optimal (the
  solver proves it; the brute force of tests/test_schedules_zb_auto.py covers M <= 3)."""
  assert main(["schedules", "-P", "2", "-M", "4", "--schedule", "zb-auto", "--durations",
               "F=2,B=3,W=1", "--exact", "5"]) == 0
  out = capsys.readouterr().out
  line = [l for l in out.splitlines() if "exact step" in l][0]
  assert "optimal" in line and "proved lower bound 27" in line, line


def test_frontier_plot_keeps_every_point_apart():
  """The README's --pareto example: pipedream-2bw, pipedream and pipemare share (8, 0%);
  every marker gets its own place (at least 3% of the axis ranges apart) and a number."""
  from rpd.cli.schedules import collect, frontier_layout
  from rpd.schedules.pareto import frontier
  rows = frontier(collect(8, 32, 2, {"F": 1, "B": 2, "W": 1}, 0.0),
                  {"activations": 10, "weights": 2})
  live = [r for r in rows if "skipped" not in r]
  pts = frontier_layout(live)
  assert sorted(n for _, _, n, _ in pts) == list(range(1, len(live) + 1))
  xs = [x for x, *_ in pts]
  ys = [y for _, y, *_ in pts]
  sx, sy = max(xs) - min(xs), max(ys) - min(ys)
  for i in range(len(pts)):
    for j in range(i):
      d = ((xs[i] - xs[j]) / sx) ** 2 + ((ys[i] - ys[j]) / sy) ** 2
      assert d > 0.03 ** 2, (live[i]["schedule"], live[j]["schedule"])
  same = [r["schedule"] for r in live if r["activations"] == 8 and r["bubble"] < 1e-12]
  assert {"pipedream", "pipedream-2bw"} <= set(same)
