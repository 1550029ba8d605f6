"""Code generation per program (rpd.codegen): the options reach XLA, the engine and LocalSGD
sweeps compile through them, and the experiment runner chooses by its work estimate."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpd import codegen, engine
from rpd.baselines import LocalSGD
from rpd.baselines import localsgd as localsgd_mod
from rpd.problems import get_problem
from rpd.rules import get_rule


def _optimized_hlo(codegen_name):
  f = lambda x: jnp.sum(jnp.sin(x) * 2.0 + 1.0)
  return codegen.jit(f, codegen_name).lower(jnp.ones(100)).compile().as_text()


def test_the_options_reach_the_compiler():
  # Loop emitters and fusion emitters leave different optimized HLO for the same program;
  # if codegen.jit dropped compiler_options the two would be one compile of the process flags.
  assert _optimized_hlo("fast") != _optimized_hlo("optimized")


def test_one_jit_per_function_and_choice():
  f = lambda x: x + 1
  assert codegen.jit(f, "fast") is codegen.jit(f, "fast")
  assert codegen.jit(f, "fast") is not codegen.jit(f, "optimized")
  assert codegen.jit(f, None) is not codegen.jit(f, "fast")


@pytest.mark.parametrize("bad", ["O3", "", "Fast"])
def test_unknown_choice_is_refused_with_its_name(bad):
  with pytest.raises(ValueError, match=repr(bad)):
    codegen.check(bad)
  p, r = get_problem("quadratic", 2), get_rule("pipedream", 2)
  with pytest.raises(ValueError, match=repr(bad)):
    engine.sweep(p, r, gammas=[0.1], seeds=[0], K=8, codegen=bad)
  with pytest.raises(ValueError, match=repr(bad)):
    LocalSGD(H=2).sweep(p, gammas=[0.1], seeds=[0], rounds=2, codegen=bad)


def test_thresholds_are_inclusive_and_ordered():
  b, o = codegen.BALANCED_FROM_WORK, codegen.OPTIMIZE_FROM_WORK
  assert 0 < b < o
  tiers = lambda w: codegen.for_work(w, "fast")
  assert tiers(0) == "fast"
  assert tiers(np.nextafter(b, 0)) == "fast"
  assert tiers(b) == "balanced"
  assert tiers(np.nextafter(o, 0)) == "balanced"
  assert tiers(o) == "optimized"
  assert tiers(np.inf) == "optimized"


@pytest.mark.parametrize("work", [0.0, 1e7, 1e9, np.inf])
def test_a_process_with_xla_defaults_keeps_them(work):
  # The full run (XLA's default code generation): every sweep keeps the process's own.
  assert codegen.for_work(work, None) is None


def test_the_process_default_is_read_from_xla_flags():
  fast = " ".join(codegen.xla_flags("fast"))
  assert codegen.process_default(fast) == "fast"
  assert codegen.process_default(f"--xla_force_host_platform_device_count=8 {fast} "
                                 "--xla_cpu_max_isa=AVX") == "fast"
  assert codegen.process_default("") is None
  assert codegen.process_default("--xla_backend_optimization_level=0") is None  # only one
  assert codegen.process_default(" ".join(codegen.xla_flags("balanced"))) is None


@pytest.mark.parametrize("name, emitters, level", [("fast", "false", "0"),
                                                    ("balanced", "false", "1"),
                                                    ("optimized", "true", "3")])
def test_each_choice_is_its_documented_code_generation(name, emitters, level):
  # The measured choices (BENCHMARKS.md, sessions 12-13): written out here by hand.
  assert codegen.xla_flags(name) == (f"--xla_cpu_use_fusion_emitters={emitters}",
                                     f"--xla_backend_optimization_level={level}")


def test_engine_sweep_compiles_through_the_chosen_jit_and_agrees():
  p, r = get_problem("quadratic", 4), get_rule("rpd", 4)
  kw = dict(gammas=[0.05, 0.1], seeds=[0, 1], K=64, record_every=16)
  base = engine.sweep(p, r, **kw)
  for name in codegen.CODEGEN:
    program = codegen.jit(engine._sweep_body, name, engine._SWEEP_STATIC)
    before = program._cache_size()
    res = engine.sweep(p, r, codegen=name, **kw)
    assert program._cache_size() == before + 1  # this jit compiled it
    engine.sweep(p, r, codegen=name, **dict(kw, gammas=[0.2, 0.3]))
    assert program._cache_size() == before + 1  # new values, same program
    np.testing.assert_allclose(res.x_SxD, base.x_SxD, rtol=1e-12, atol=1e-14)
    for m in ("loss", "grad_norm_sq"):
      np.testing.assert_allclose(res.metrics[m], base.metrics[m], rtol=1e-12)


def test_localsgd_sweep_compiles_through_the_chosen_jit_and_agrees():
  p = get_problem("quadratic", 2)
  kw = dict(gammas=[0.05, 0.1], seeds=[0, 1], rounds=8, record_every=4)
  base = LocalSGD(H=2).sweep(p, **kw)
  for name in codegen.CODEGEN:
    program = codegen.jit(localsgd_mod._sweep_body, name, localsgd_mod._SWEEP_STATIC)
    before = program._cache_size()
    res = LocalSGD(H=2).sweep(p, codegen=name, **kw)
    assert program._cache_size() == before + 1
    np.testing.assert_allclose(res.x_SxD, base.x_SxD, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.metrics["loss"], base.metrics["loss"], rtol=1e-12)


def test_work_estimates_by_hand():
  from rpd.experiments.runner import engine_work, localsgd_work
  # rpd at S = 16 on the 64-dimensional quadratic: blocks of D = 4; the undo log holds
  # tau_max = 16^2 + floor((16 (1 - 1 - 1) + 1 - 1) / 2) = 248 block updates of 4 floats.
  p = get_problem("quadratic", 16)
  assert p.D == 4
  assert engine_work(p, get_rule("rpd", 16), K=16384, n=12) == 12 * 16384 * (16 * 4 + 248 * 4)
  # LocalSGD: S workers, rounds * H local steps each, the whole S x D iterate per step.
  assert localsgd_work(p, H=8, rounds=9, n=5) == 5 * 9 * 8 * 16 * (16 * 4)


# Two tiers and the full run's None: the runner hands on what for_work returns (the test
# above maps every work to its tier). A tier of "optimized" here would add a 5 s compile of
# XLA's slowest-to-compile code and test the same hand-over.
@pytest.mark.parametrize("default, balanced, optimized, expect", [
    ("fast", 0.0, np.inf, "balanced"), ("fast", np.inf, np.inf, "fast"),
    (None, 0.0, 0.0, None)])
def test_runner_passes_the_choice_for_its_work(monkeypatch, tmp_path, default, balanced,
                                               optimized, expect):
  from rpd.experiments.common import ResultsStore
  from rpd.experiments import runner
  seen = {}
  real_sweep, real_lsgd = engine.sweep, LocalSGD.sweep

  def spy_sweep(*a, **kw):
    seen["engine"] = kw["codegen"]
    return real_sweep(*a, **kw)

  def spy_lsgd(self, *a, **kw):
    seen["localsgd"] = kw["codegen"]
    return real_lsgd(self, *a, **kw)

  monkeypatch.setattr(engine, "sweep", spy_sweep)
  monkeypatch.setattr(LocalSGD, "sweep", spy_lsgd)
  monkeypatch.setattr(codegen, "process_default", lambda: default)
  monkeypatch.setattr(codegen, "BALANCED_FROM_WORK", balanced)
  monkeypatch.setattr(codegen, "OPTIMIZE_FROM_WORK", optimized)
  store = ResultsStore(str(tmp_path / "r.jsonl"))
  spec = {"name": "quadratic", "options": {}}
  runner.run_engine_batch(store, {"experiment": "t"}, spec, "pipedream", 2, [0.1], [0], 8, 4)
  runner.run_localsgd_batch(store, {"experiment": "t"}, spec, 2, 2, [0.1], [0], 4, 2, None)
  assert seen == {"engine": expect, "localsgd": expect}


def test_the_quick_runs_process_flags_are_the_fast_choice():
  from rpd.experiments.common import FAST_COMPILE_XLA_FLAGS
  assert FAST_COMPILE_XLA_FLAGS == ("--xla_cpu_use_fusion_emitters=false",
                                    "--xla_backend_optimization_level=0")


@pytest.mark.parametrize("name", ["fast", "balanced", "optimized"])
def test_each_code_generation_equals_the_numpy_replay(name):
  # Independent of the agreement tests above (which compare code generations with each
  # other): PipeDream at S = 3 on a dense quadratic, float64, against tests/replay_numpy.py's
  # replay of the schedule's timeline, with the tolerances of tests/test_replay.py.
  from replay_numpy import replay
  S, D, K, gamma = 3, 2, 3 * 9 + 6, 0.15
  p = get_problem("quadratic", S, d=S * D, noise=0.0, seed=S, L=1.0, mu=0.1)
  x0 = np.random.default_rng(S).standard_normal((S, D))
  x_ref, _ = replay("pipedream", S, K, gamma, np.asarray(p.A, np.float64),
                    np.asarray(p.b, np.float64), x0)
  res = engine.sweep(p, get_rule("pipedream", S), gammas=[gamma], seeds=[0], K=K,
                     record_every=S, x0=x0, codegen=name)
  np.testing.assert_allclose(res.x_SxD[0], x_ref, rtol=1e-5, atol=1e-6)
  assert np.max(np.abs(x_ref - x0)) > 1e-2  # the run moved
