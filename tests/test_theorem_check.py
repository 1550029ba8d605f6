"""The theorem and the stale-read lemma against measured engine runs (small, fast configs)."""
import dataclasses

import pytest

from rpd.theory import check, theorem

CFG = dataclasses.replace(check.QUICK, fractions=(0.1, 1.0), K=2048, seeds=4, d=16)


@pytest.fixture(scope="module")
def rows():
  out = []
  for problem, rule, S in (("quadratic", "rpd", 2), ("quadratic", "rpd", 8),
                           ("logistic", "rpd", 4), ("quadratic", "pipedream", 4)):
    out += check.check_configuration(problem, rule, S, CFG)
  return out


def test_bound_and_lemma_hold_where_the_theorem_applies(rows):
  inside = [r for r in rows if r["in_assumptions"]]
  # 3 configurations x 3 variants' gamma_max x 2 fractions, + A8's on the 2 quadratic ones
  assert len(inside) == 18 + 4
  for r in inside:
    assert r["diverged"] == 0 and r["holds"] and r["lemma_holds"], r
    for v in theorem.VARIANTS:
      assert r[f"ratio_{v}"] is None or r[f"ratio_{v}"] >= 1, r
      assert r[f"lemma_ratio_{v}"] >= 1, r
    # the any-H theorem (A8) applies to the quadratic rows only, and holds there
    if r["problem"] != "quadratic":
      assert r["bound_A8"] is None and r["gamma_of"] != "A8", r
    elif r["gamma_of"] == "A8":
      assert r["bound_A8"] is not None and r["ratio_A8"] >= 1, r
    # The refined bound is the smaller one wherever both apply.
    if r["bound_martingale"] is not None and r["bound_cs"] is not None:
      assert r["bound_martingale"] <= r["bound_cs"]


def test_refined_bound_is_not_applied_above_its_step_size(rows):
  for r in rows:
    if r["gamma_frac"] == 1.0 and r["gamma_of"] == "cs":
      assert r["bound_martingale"] is None and r["bound_cs"] is not None


def test_pipedream_rows_are_measured_and_flagged_outside_assumptions(rows):
  pd = [r for r in rows if r["rule"] == "pipedream"]
  assert pd and all(not r["in_assumptions"] and r["measured"] > 0 for r in pd)


def test_check_has_teeth_without_the_block_factor_in_A(rows):
  # A = 2 Delta (forgetting that one step moves one block in S) is violated by a run.
  violated = False
  for r in rows:
    if not r["in_assumptions"]:
      continue
    th = theorem.derive("cs")
    wrong = th["bound"] - th["A"] / (theorem.gamma * theorem.K) * (1 - 1 / theorem.S)
    val = float(wrong.subs({theorem.gamma: r["gamma"], theorem.K: r["K"], theorem.S: r["S"],
                            theorem.L: r["L"], theorem.tau: r["tau"],
                            theorem.sigma2: r["sigma2"], theorem.Delta: r["Delta"]}))
    violated |= val < r["measured"]
  assert violated


def test_theory_side_matches_the_sympy_bound():
  b = check.theory_side("cs", gamma_=0.01, K_=1000, S_=4, L_=1.0, tau_=14, sigma2_=0.5,
                        Delta_=2.0)
  assert b == pytest.approx(2 * 4 * 2.0 / (0.01 * 1000) + 0.01 * 0.5 + 0.01 ** 2 * 0.5 * 14 ** 2)
  assert check.theory_side("martingale", gamma_=1.0, K_=10, S_=4, L_=1.0, tau_=14,
                           sigma2_=0.5, Delta_=2.0) is None


def test_cli_check_json_and_table(rows, monkeypatch, capsys):
  import json

  from rpd.cli import main
  monkeypatch.setattr(check, "run_all", lambda full, seeds, progress=False: rows)
  assert main(["theory", "check", "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert len(out["rows"]) == len(rows) and out["stale_scaling"] is None
  inside = out["summary"]["rpd (theorem applies)"]
  assert inside["violations"] == [] and inside["ratio_cs"][0] >= 1 and out["violations"] == []
  assert main(["theory", "check"]) == 0
  text = capsys.readouterr().out
  assert "bnd_cs" in text and "VIOLATED" not in text


def test_every_variant_is_checked_at_its_own_gamma_max(rows):
  for v in theorem.VARIANTS:
    mine = [r for r in rows if r["gamma_of"] == v and r["gamma_frac"] == 1.0]
    assert mine and all(r[f"bound_{v}"] is not None for r in mine), v
  # A variant's bound is applied exactly where gamma is within its own limit.
  for r in rows:
    for v in theorem.VARIANTS:
      inside = r["gamma"] <= check.gamma_max(v, r["L"], r["tau"], r["S"]) * (1 + 1e-12)
      assert (r[f"bound_{v}"] is not None) == inside, (v, r["gamma_of"], r["S"])
  # At S = 8 the block limit is the largest of the three (S^-3/2 against S^-2).
  top = [r for r in rows if r["S"] == 8 and r["gamma_of"] == "block" and r["gamma_frac"] == 1]
  assert top and all(r["bound_cs"] is None and r["bound_martingale"] is None for r in top)


def test_check_exits_1_on_an_injected_violation(rows, monkeypatch, capsys):
  # A bound 100x too small (a wrong theorem) makes real measured rows violate it: exit 1.
  from rpd.cli import main
  real = check.theory_side
  monkeypatch.setattr(check, "theory_side", lambda *a, **k: (
      None if real(*a, **k) is None else real(*a, **k) / 100))
  bad = check.check_configuration("quadratic", "rpd", 2, CFG)
  monkeypatch.setattr(check, "run_all", lambda full, seeds, progress=False: bad)
  assert main(["theory", "check"]) == 1
  text = capsys.readouterr().out
  assert "VIOLATED" in text
  assert main(["theory", "check", "--json"]) == 1
  import json
  assert json.loads(capsys.readouterr().out)["violations"]
