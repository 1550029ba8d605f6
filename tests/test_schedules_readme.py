"""Every number of the README's schedules section is either computed here from the current
code (and must appear in the README as written) or written by a named command
(``python -m rpd.schedules.zb_auto_grid [--no-seeds] [--exact 5]``, ``python -m
rpd.schedules.claims docs/claims.md``, the latter checked by tests/test_schedules_cli.py)."""
from __future__ import annotations

import pathlib

import pytest

from rpd import guards
from rpd.schedules import get_schedule
from rpd.schedules import zb_auto
from rpd.schedules.memory import ZB_PAPER_RATIO
from rpd.schedules.metrics import schedule_metrics

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def section():
  text = (ROOT / "README.md").read_text()
  start = text.index("## Schedules: bubble, memory and staleness")
  return " ".join(text[start:text.index("\n## ", start + 5)].split())


def test_size_limits_as_stated(section):
  assert f"`P V <= {guards.MAX_SIMULATED_STAGES}` blocks" in section
  assert f"`M <= {guards.MAX_SCHEDULE_MICROBATCHES}`" in section
  assert f"`P V M <= {guards.MAX_SCHEDULE_CELLS}`" in section
  assert f"`P^3 M <= {zb_auto.MAX_SEARCH_P3M}`" in section
  from rpd.schedules.chimera import MAX_CHIMERA_PM
  assert f"Chimera's `P M <= {MAX_CHIMERA_PM}`" in section
  assert f"`rpd theory stability --stages <= {guards.MAX_STABILITY_STAGES}`" in section
  assert f"at most {zb_auto.MAX_EXACT_BINARIES} order variables" in section


def test_memory_model_ratio_as_stated(section):
  assert f"default `{ZB_PAPER_RATIO:.4f}`" in section


def test_zb_auto_102_needs_limit_10_and_its_last_device(section):
  """105 at limit 7, 102 (the bound) at 10; the last device ends its last B at 92 and then
  runs 10 pending W."""
  d = {"F": 2, "B": 3, "W": 1}
  assert zb_auto.ZBAuto(7).timed(4, 16, 1, d).makespan == 105
  timed = zb_auto.ZBAuto(10).timed(4, 16, 1, d)
  assert timed.makespan == 102
  last = timed.actions[3]
  i = max(j for j, a in enumerate(last) if a.kind == "B")
  assert timed.end[("B", last[i].microbatch, 3)] == 92
  assert [a.kind for a in last[i + 1:]] == ["W"] * 10
  for s in ("needs an in-flight limit of 10", "last `B` at 92", "run 10 pending `W`s",
            "the search finds 105", "a budget of 7 `M_B` reaches 102"):
    assert s in section, s


def test_chimera_loses_to_1f1b_at_b_2f(section):
  d = {"F": 1, "B": 2, "W": 0}
  c = schedule_metrics(get_schedule("chimera"), 8, 32, 1, d, tables=False)["makespan"]
  o = schedule_metrics(get_schedule("1f1b-flush"), 8, 32, 1, d, tables=False)["makespan"]
  assert (c, o) == (123, 117)
  assert "`P=8, M=32, F=1, B=2`: 123 vs 117" in section


def test_chimera_fd_dualpipe_overlap_and_zb_auto_v_as_stated(section):
  """The README's numbers for chimera-fd, DualPipe-V's overlap and zb-auto-v, from the code."""
  d = {"F": 1, "B": 2, "W": 0}
  fd = schedule_metrics(get_schedule("chimera-fd"), 8, 32, 1, d, tables=False)["makespan"]
  assert fd == 108
  assert "with forward doubling (`chimera-fd`) it gives 108 there" in section
  d = {"F": 2, "B": 3, "W": 1}
  dpv = get_schedule("dualpipe-v")
  over = schedule_metrics(dpv, 4, 8, 2, {**d, "FB": 5}, tables=False)["makespan"]
  plain = schedule_metrics(dpv, 4, 8, 2, d, tables=False)["makespan"]
  assert (over, plain) == (52, 54.5)
  assert "gives makespan 52 (54.5 with the pairs back to back)" in section
  from rpd.schedules.zb_auto_v import ZBAutoV
  assert schedule_metrics(ZBAutoV(), 4, 16, 2, d, tables=False)["makespan"] == 102
  assert schedule_metrics(ZBAutoV(8), 4, 16, 2, d, tables=False)["makespan"] == 99.5
  unseeded = type("Unseeded", (ZBAutoV,), {"seeds": ()})
  assert schedule_metrics(unseeded(), 4, 16, 2, d, tables=False)["makespan"] == 103
  assert "102 = ZB-V; its heuristic alone 103), with `2P` device shares it finds 99.5" in section


def test_zb_h1_and_zb_h2_disagreements(section):
  r = schedule_metrics(get_schedule("zb-h1"), 4, 16, 1, {"F": 1, "B": 1, "W": 2}, tables=False)
  assert r["max_stage_span_idle"] == 3        # the paper's formula gives (P-1)(F+B-W) = 0
  h2 = schedule_metrics(get_schedule("zb-h2"), 4, 16, 1, {"F": 1, "B": 1, "W": 1},
                        tables=False)
  assert f"{100 * h2['bubble_ratio']:.1f}%" == "5.9%"
  assert "`F=B=1, W=2, P=4`: 3 vs 0" in section and "(5.9% at `P=4, M=16`)" in section


def test_pipedream_delays_as_stated(section):
  fb = schedule_metrics(get_schedule("pipedream"), 6, 12, 1, {"F": 1, "B": 1, "W": 0},
                        tables=False)
  f2b = schedule_metrics(get_schedule("pipedream"), 6, 12, 1, {"F": 1, "B": 2, "W": 0},
                         tables=False)
  assert (fb["tau_max"], f2b["tau_max"]) == (33, 34)
  assert "`tau_max` 33 with `B = F`" in section and "34 with `B = 2F`" in section


def test_grid_counts_as_stated(section):
  """The counts come from ``python -m rpd.schedules.zb_auto_grid`` (tested in
  tests/test_schedules_zb_auto.py); here: the README states the same."""
  for s in ("(81 cells)", "in 36 cells", "in 67;", "14 of these cells lost"):
    assert s in section, s
