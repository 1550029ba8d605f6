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
  assert len(inside) == 6
  for r in inside:
    assert r["diverged"] == 0
    assert r["ratio_cs"] >= 1, r
    assert r["ratio_martingale"] is None or r["ratio_martingale"] >= 1, r
    assert r["lemma_ratio_cs"] >= 1 and r["lemma_ratio_martingale"] >= 1, r
    # The refined bound is the smaller one wherever both apply.
    if r["bound_martingale"] is not None:
      assert r["bound_martingale"] <= r["bound_cs"]


def test_refined_bound_is_not_applied_above_its_step_size(rows):
  for r in rows:
    if r["gamma_frac"] == 1.0:
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
  monkeypatch.setattr(check, "run_all", lambda quick, seeds, progress=False: rows)
  assert main(["theory", "check", "--quick", "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  assert len(out["rows"]) == len(rows) and out["stale_scaling"] is None
  inside = out["summary"]["rpd (theorem applies)"]
  assert inside["violations"] == [] and inside["ratio_cs"][0] >= 1
  assert main(["theory", "check", "--quick"]) == 0
  text = capsys.readouterr().out
  assert "bound_cs" in text and "VIOLATED" not in text
