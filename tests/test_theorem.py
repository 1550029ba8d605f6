"""The RPD theorem: each proof step, the derived constants, the orders in S, THEOREM.md, CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest
import sympy as sp

from rpd.cli import main
from rpd.theory import cache, certify, delay, lemmas, scaling, theorem
from rpd.theory.theorem import Delta, K, L, S, gamma, sigma2, tau


@pytest.mark.parametrize("name", sorted(lemmas.ALL))
def test_every_atomic_fact_passes_its_check(name):
  c = lemmas.ALL[name]()
  assert c.passed, c
  if c.tightest is not None:
    assert c.tightest >= 1 - 1e-9


def test_adversarial_instances_make_the_inequalities_tight():
  # Equality is attained (up to rounding) where the proof says it should be.
  for name in ("descent_lemma", "block_smoothness", "stale_read_cauchy_schwarz",
               "window_count"):
    assert lemmas.ALL[name]().tightest == pytest.approx(1.0, abs=1e-6), name
  # The martingale lemma loses exactly Young's factor 2 on its worst instance.
  assert lemmas.stale_read_martingale().tightest == pytest.approx(2.0, rel=1e-9)


def test_one_formula_feeds_certificate_bound_and_check():
  # The summed fact, the averaged bound and the lambdified check all come from Variant.rhs.
  for v in theorem.VARIANTS:
    rhs = theorem.VARIANTS[v].rhs
    fact = {f.name: f for f in theorem.summed_facts(theorem.VARIANTS[v])}["stale_read"]
    summed = sp.expand(theorem.SD - fact.expr)
    assert sp.expand(summed - (sp.diff(rhs, theorem.W) * theorem.SW
                               + theorem.K * rhs.subs(theorem.W, 0))) == 0
    num = {gamma: 0.3, tau: 7, S: 3, sigma2: 1.7}
    val = float(rhs.subs(num).subs(theorem.W, 7 * 2.5))
    assert theorem.lemma_bound(v, 2.5, 0.3, 7, 1.7, 3) == pytest.approx(val)
    assert certify.lemma_bound_fn(v)(0.3, 7, 3, 4.0, 1.7) == pytest.approx(
        float(rhs.subs(num).subs(theorem.W, 4.0)))


def test_lemma_checks_catch_wrong_lemmas():
  # Without the factor tau, Cauchy-Schwarz is false; the numeric check must say so.
  assert not lemmas.stale_read_cauchy_schwarz(bound=lambda t, w: w).passed
  # A noise term that does not grow with the window is false in expectation.
  wrong = lambda t, G, n, s2, S_: 2 * (t * G + s2 / S_)
  assert not lemmas.stale_read_martingale(bound=wrong).passed


def test_one_step_certificate():
  st = theorem.one_step()
  expected = (theorem.Fk1 - theorem.Fk + gamma / (2 * S) * theorem.N_
              + gamma / 2 * (1 - L * gamma) * theorem.G_ - gamma * L ** 2 / 2 * theorem.D_
              - L * gamma ** 2 * sigma2 / (2 * S))
  assert sp.expand(st["inequality"] - expected) == 0
  for f in st["facts"]:
    if f.kind == "le":
      assert st["multipliers"][f.name].is_nonnegative, f.name


def test_certificate_rejects_a_fact_in_the_wrong_direction():
  facts = list(theorem.one_step_facts())
  idx = [f.name for f in facts].index("smoothness")
  f = facts[idx]
  facts[idx] = theorem.Fact(f.name, -f.expr, "le", f.check, "wrong direction")
  with pytest.raises(AssertionError, match="smoothness"):
    theorem._certificate(facts[0].expr, facts[1:], theorem._ONE_STEP_ELIMINATED)


def test_constants_of_both_variants():
  cs, mg = theorem.derive("cs"), theorem.derive("martingale")
  assert sp.simplify(cs["A"] - 2 * S * Delta) == 0
  assert sp.simplify(cs["B"] - L * sigma2) == 0
  assert sp.simplify(cs["C"] - L ** 2 * sigma2) == 0 and cs["tau_power"] == 2
  assert sp.simplify(mg["C"] - 2 * L ** 2 * sigma2) == 0 and mg["tau_power"] == 1
  for th in (cs, mg):
    assert sp.expand(th["bound"] - th["A"] / (gamma * K) - th["B"] * gamma
                     - th["stale_term"]) == 0
    # gamma_max is the root of the condition; the condition holds strictly below it.
    for t_ in (1, 3, 14, 248):
      gm = th["gamma_max"].subs({L: 2, tau: t_})
      assert abs(float(th["condition"].subs({L: 2, tau: t_, gamma: gm}))) < 1e-12
      assert float(th["condition"].subs({L: 2, tau: t_, gamma: gm * 0.99})) > 0
      assert float(th["condition"].subs({L: 2, tau: t_, gamma: gm * 1.01})) < 0
  assert theorem.telescoping_holds()
  assert theorem.sufficient_step_size_holds("cs")
  assert theorem.sufficient_step_size_holds("martingale")


def test_all_chain_checks_pass_with_a_status_per_step():
  for v in theorem.VARIANTS:
    bad = {k: c for k, c in certify.checks(v).items() if not c.passed}
    assert not bad
    steps = certify.steps(v)
    assert all(s["status"] in ("proved", "checked") and s["how"] for s in steps.values())
    assert steps[f"certificate_{v}"]["status"] == "proved"
    assert steps[f"stale_read_{v}"]["status"] == "checked"


# --- mutation tests: the certificate's constants have one source of truth -------------------

def _mutated(monkeypatch, variant, wa=1, wb=1):
  """Scale the W part of the variant's one formula by ``wa`` and its noise part by ``wb``."""
  import dataclasses
  rhs = sp.expand(theorem.VARIANTS[variant].rhs)
  pw = sp.expand(sp.diff(rhs, theorem.W) * theorem.W)
  v = dataclasses.replace(theorem.VARIANTS[variant], rhs=wa * pw + wb * (rhs - pw))
  monkeypatch.setitem(theorem.VARIANTS, variant, v)
  certify.checks.cache_clear()


def test_mutation_drop_stale_term_fails_stale_read_check(monkeypatch):
  _mutated(monkeypatch, "cs", wb=0)
  assert not certify.stale_read_check("cs").passed


def test_mutation_halve_lemma_constant_a_fails_stale_read_check(monkeypatch):
  _mutated(monkeypatch, "cs", wa=sp.Rational(1, 2))
  assert not certify.stale_read_check("cs").passed


def test_mutation_halve_lemma_constant_b_fails_stale_read_check(monkeypatch):
  _mutated(monkeypatch, "cs", wb=sp.Rational(1, 2))
  assert not certify.stale_read_check("cs").passed


def test_mutation_flip_multiplier_sign_fails_certificate_verification():
  for v in theorem.VARIANTS:
    th = theorem.derive(v)
    f = th["facts"]
    for name in ("stale_read", "window_count"):
      mult = dict(th["multipliers"])
      assert theorem.verify_certificate(f[0].expr, f[1:], mult, th["final"]) == []
      mult[name] = -mult[name]
      assert theorem.verify_certificate(f[0].expr, f[1:], mult, th["final"]), (v, name)


def test_lemma_checks_use_the_variant_constants(monkeypatch):
  # A looser lemma (a and b doubled) passes with slack 2: the check reads VARIANTS.
  assert certify.stale_read_check("cs").tightest == pytest.approx(1.0, abs=1e-9)
  _mutated(monkeypatch, "cs", wa=2, wb=2)
  c = certify.stale_read_check("cs")
  assert c.passed and c.tightest == pytest.approx(2.0, rel=1e-9)


def test_block_variant_step_size_is_S_to_minus_three_halves():
  o = scaling.orders("block")
  assert o["gamma_max"]["even"][0] == sp.Rational(-3, 2)
  assert o["gamma_max"]["odd"][0] == sp.Rational(-3, 2)
  assert scaling.orders("cs")["gamma_max"]["even"][0] == -2


def test_cache_equals_a_fresh_derivation():
  data = __import__("json").loads(cache.CACHE.read_text())
  assert data["source_hash"] == cache.source_hash(), (
      "theory/derivation.json is stale: run `python -m rpd.theory.cache --write`")
  d = data["derivation"]
  loc = theorem.SYMBOLS
  for v in theorem.VARIANTS:
    th = theorem.derive(v)
    c = d["variants"][v]
    for key in ("bound", "stale_term", "gamma_max", "A", "B", "C"):
      assert sp.simplify(sp.sympify(c[key], locals=loc) - th[key]) == 0, (v, key)
    for name, m in th["multipliers"].items():
      assert sp.simplify(sp.sympify(c["multipliers"][name], locals=loc) - m) == 0
    assert {k: s["passed"] for k, s in c["checks"].items()} == {
        k: ch.passed for k, ch in certify.checks(v).items()}
    for row, fresh in zip(c["scalings"]["table"], scaling.table(v)):
      assert row == pytest.approx(fresh)


EXPECTED_EXPONENTS = {
    "cs": {"stale_fixed_gamma": 4, "stale_gamma_c_over_sqrtK": 4,
           "stale_at_minimizer_K_to_inf": 5, "gamma_not_dominant": -4, "K_star_tuned": 9,
           "gamma_max": -2, "K_cap": 5, "stale_at_gamma_max": 0, "K_star_fixed_c": 6},
    "block": {"stale_fixed_gamma": 2, "gamma_not_dominant": -2, "K_cap": 4},
    "martingale": {"stale_fixed_gamma": 2, "stale_gamma_c_over_sqrtK": 2,
                   "stale_at_minimizer_K_to_inf": 3, "gamma_not_dominant": -2,
                   "K_star_tuned": 5, "gamma_max": -2, "K_cap": 5, "stale_at_gamma_max": -2},
}


@pytest.mark.parametrize("variant", ["cs", "martingale", "block"])
def test_orders_in_S(variant):
  o = scaling.orders(variant)
  assert o["same_for_both_parities"]
  for name, p in EXPECTED_EXPONENTS[variant].items():
    assert o[name]["even"][0] == p, name
    assert o[name]["odd"] == o[name]["even"], name
  # Every order against direct evaluation at large S (both parities; K and K_mb fixed): the
  # exponent from the growth between S and 4 S, the leading coefficient from f(S) / S^p (worst
  # deviations at these S: 2.8e-4 and 5.2e-4, so a 0.5% error in a coefficient fails).
  num = {L: 1.7, sigma2: 0.3, Delta: 2.0, gamma: 0.01, K: 10 ** 6, scaling.K_mb: 10 ** 6,
         scaling.c: 0.5}
  for name, entry in o.items():
    if name == "same_for_both_parities":
      continue
    for label, s_ in (("even", 4000), ("odd", 4001), ("mb", 4000)):
      p, lc = entry[label]
      expr = entry["expr"].subs(K, S * scaling.K_mb) if label == "mb" else entry["expr"]
      f = lambda n: float(expr.subs({tau: delay.tau_max(n), S: n}).subs(num))
      growth = np.log(f(4 * s_) / f(s_)) / np.log(4)
      assert growth == pytest.approx(float(p), abs=1e-3), (name, label)
      assert f(s_) / s_ ** float(p) == pytest.approx(float(lc.subs(num)), rel=2e-3), (name, label)


def test_order_in_S_on_hand_expansions():
  """Hand-expanded leading terms, including a root and a rational function; a ``log S``
  factor is refused, not given an order."""
  assert scaling.order_in_S(3 * S ** 2 + S) == (2, 3)
  assert scaling.order_in_S(sp.sqrt(4 * S ** 3 + S) / (S + 1)) == (sp.Rational(1, 2), 2)
  assert scaling.order_in_S(L / (2 * S ** 2 - S)) == (-2, L / 2)
  # leading terms that cancel: the order comes from the next term
  assert scaling.order_in_S((S + 1) ** 2 - S ** 2) == (1, 2)
  assert scaling.order_in_S(sp.sqrt(S ** 2 + S) - S) == (0, sp.Rational(1, 2))
  assert scaling.order_in_S(1 / (S - 1) - 1 / S) == (-2, 1)
  with pytest.raises(ValueError, match="no leading term"):
    scaling.order_in_S(S * sp.log(S))


def test_comparison_with_paper_under_both_countings():
  cs, mg = scaling.comparison("cs"), scaling.comparison("martingale")
  assert cs["fixed_gamma"]["matches"] == "both"
  # 2 L Delta S tau^2 / K in block updates is S^5; in microbatches K_mb = K / S it is S^4.
  m = cs["minimizer_K_to_inf"]
  assert (m["K_block_updates"], m["K_microbatches"], m["matches"]) == (5, 4, "microbatches")
  assert mg["fixed_gamma"]["K_block_updates"] == 2
  assert mg["fixed_gamma"]["matches"].startswith("neither: a lower order")


def test_table_values():
  rows = {r["S"]: r for r in scaling.table("cs")}
  assert sorted(rows) == list(scaling.S_VALUES)
  for s_, r in rows.items():
    assert r["tau_max"] == delay.tau_max(s_)
    assert r["stale_coef"] == pytest.approx(r["tau_max"] ** 2)  # L = sigma2 = 1
    assert r["gamma_not_dominant"] == pytest.approx(1 / r["tau_max"] ** 2)


def test_theorem_md_is_up_to_date():
  assert certify.THEOREM_MD.read_text() == certify.render_markdown(), (
      "theory/THEOREM.md is stale: run `python -m rpd.theory.certify --write`")


def test_cli_json_keys_and_parsable_formulas(capsys):
  assert main(["theory", "--json"]) == 0
  out = json.loads(capsys.readouterr().out)
  for key in ("bound", "stale_term", "assumptions", "A", "B", "C", "step_size_condition",
              "scalings", "refined"):
    assert key in out
  assert all(isinstance(a, str) for a in out["assumptions"]) and len(out["assumptions"]) >= 5
  loc = theorem.SYMBOLS
  bound = sp.sympify(out["bound"], locals=loc)
  stale = sp.sympify(out["stale_term"], locals=loc)
  assert sp.simplify(bound - theorem.derive("cs")["bound"]) == 0
  assert stale.has(tau) and sp.simplify(stale - L ** 2 * sigma2 * gamma ** 2 * tau ** 2) == 0
  assert {str(s_) for s_ in bound.free_symbols} <= set(loc)
  refined = sp.sympify(out["refined"]["stale_term"], locals=loc)
  assert sp.simplify(refined - 2 * L ** 2 * sigma2 * gamma ** 2 * tau) == 0
  assert all(c["passed"] and c["status"] in ("proved", "checked")
             for c in out["checks"].values())
  assert set(out["variants"]) == set(theorem.VARIANTS)


def test_cli_text_and_latex(capsys):
  assert main(["theory", "--latex"]) == 0
  text = capsys.readouterr().out
  assert "\\frac" in text and "A1 (smoothness)" in text and "DISAGREE" not in text
  assert "\\sigma^{2}" in text and "sigma_{2}" not in text and "**" not in text.split(
      "PipeDream delay")[0].split("Assumptions")[1].replace("||", "")
  assert main(["theory"]) == 0
  text = capsys.readouterr().out
  assert "gamma_nd" in text and "K_cap = K" in text and "K_mb" in text


def test_cli_show_reads_the_cache_and_derives_nothing(monkeypatch, capsys):
  """``rpd theory`` prints the cached derivation (theory/derivation.json, about 1 s) instead
  of deriving it again (about 15 s): fails when the cache is stale. (Was a timed test.)"""
  def derive_again():
    raise RuntimeError("rpd theory derived the theorem instead of reading "
                       "theory/derivation.json: run `python -m rpd.theory.cache --write`")

  monkeypatch.setattr(cache, "build", derive_again)
  assert main(["theory", "--json"]) == 0
  json.loads(capsys.readouterr().out,
             parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))


@pytest.mark.parametrize("argv, needle", [
    (["theory", "nosuch"], "nosuch"),
    (["theory", "--L", "-1"], "-1"),
    (["theory", "check", "--seeds", "0"], "0"),
    (["theory", "--sigma2", "inf"], "inf"),
    (["theory", "stability", "--stages", "-3"], "-3"),
])
def test_cli_bad_input_one_line_exit_2(argv, needle):
  r = subprocess.run([sys.executable, "-m", "rpd", *argv], capture_output=True, text=True)
  assert r.returncode == 2
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1 and needle in lines[0] and "Traceback" not in r.stderr


def test_whole_theorem_with_exact_expectations():
  from rpd.theory import exact
  r = exact.theorem_exact()
  assert r["check"].passed and r["check"].instances == 32
  for row in r["rows"]:
    for v in ("cs", "martingale"):
      assert row[v]["theory"] is not None and row[v]["measured"] <= row[v]["theory"]
  # At gamma = gamma_max the bound is within a small factor on some model.
  assert min(r["tightest"].values()) < 5
