"""Experiment drivers end to end (tiny configurations), resuming, figures, CLI."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from rpd.experiments import common, critical_gamma, pd_vs_localsgd, stage_sweep, tuned_rate
from rpd.experiments.common import ResultsStore
from rpd.experiments.configs import critical_gamma as cfg_cg
from rpd.experiments.configs import pd_vs_localsgd as cfg_pl
from rpd.experiments.configs import stage_sweep as cfg_ss
from rpd.experiments.configs import tuned_rate as cfg_tr

QUAD = dict(label="quadratic, exact gradients", name="quadratic",
            options=dict(d=16, L=1.0, mu=0.1, noise=0.0, seed=0))


def tiny_stage_sweep():
  cfg = cfg_ss.get_config(quick=True)
  cfg.update(problems=[QUAD], stages=[2, 4], gammas=[0.01, 0.3], gamma_fit=0.01, seeds=[0, 1],
             K=256, n_records=16)
  return cfg


def tiny_critical():
  cfg = cfg_cg.get_config(quick=True)
  cfg.update(problem=dict(QUAD), rules=["pipedream"], stages=[1, 2, 4], grid=6, rounds=2,
             K_microbatches=8)
  return cfg


def tiny_pd_vs_localsgd():
  cfg = cfg_pl.get_config(quick=True)
  cfg.update(problems=[
      dict(QUAD, label="quadratic", gammas=[0.1, 0.3]),
      dict(label="character LM (Markov source)", name="charlm", gammas=[0.3],
           options=dict(hidden=8, n_layers=4, n_chains=4, length=128, n_eval=64), stages=[2])],
      stages=[2, 4], H=[2], seeds=[0], microbatches=32, n_records=4)
  return cfg


def _nonempty(paths):
  assert {os.path.splitext(p)[1] for p in paths} == {".png", ".pdf"}
  for p in paths:
    assert os.path.getsize(p) > 1000, p


def test_stage_sweep_and_tuned_rate_end_to_end(tmp_path):
  cfg = tiny_stage_sweep()
  store = ResultsStore(str(tmp_path / "r.jsonl"))
  assert stage_sweep.run(cfg, store, progress=False) == 2 * 2 * 2 * 2
  out = stage_sweep.plot(cfg, store, str(tmp_path))
  _nonempty(out["figures"])
  fit = out["fits"][(QUAD["label"], "pipedream", "avg_stale_grad_err", "early")][0]
  assert np.isfinite(fit.p) and fit.p > 0  # more stages, more staleness
  assert "Exponents" in out["finding"]
  tr = cfg_tr.get_config(quick=True)
  tr["sweep"] = cfg
  assert tuned_rate.run(tr, store, progress=False) == 0  # reuses the stage sweep's runs
  figs = []  # the figure, kept on its way to the real save_figure (one plot, not two)
  real_save = tuned_rate.save_figure
  tuned_rate.save_figure = lambda fig, out_dir, name: (figs.append(fig), real_save(
      fig, out_dir, name))[1]
  try:
    res = tuned_rate.plot(tr, store, str(tmp_path))
  finally:
    tuned_rate.save_figure = real_save
  _nonempty(res["figures"])
  assert len(figs) == 1
  legend = {t.get_text(): h for t, h in zip(figs[0].axes[0].get_legend().get_texts(),
                                            figs[0].axes[0].get_legend().legend_handles)}
  squares = next(h for t, h in legend.items() if t.startswith("squares"))
  fit_text = next(t for t in legend if "fit to the squares" in t)
  assert squares.get_marker() == "s" and squares.get_linestyle() == "--"
  assert legend[fit_text].get_linestyle() == ":" and fit_text.startswith("dotted")
  assert all(row["gamma"] in cfg["gammas"] for row in res["table"])
  # Every row carries metadata.
  row = next(iter(store.rows.values()))
  assert {"commit", "jax", "devices", "seed"} <= set(row["meta"])


def test_resume_runs_only_missing_rows(tmp_path):
  """Cut the results file to k rows: a rerun adds exactly the missing ones."""
  cfg = tiny_stage_sweep()
  cfg.update(stages=[2], rules=["pipedream"])
  path = str(tmp_path / "r.jsonl")
  n = stage_sweep.run(cfg, ResultsStore(path), progress=False)
  lines = open(path).read().splitlines(keepends=True)
  assert len(lines) == n == 4
  with open(path, "w") as f:
    f.writelines(lines[:1])
    f.write(lines[1][: len(lines[1]) // 2])  # a line cut short by a crash
  store = ResultsStore(path)
  assert len(store.rows) == 1
  assert stage_sweep.run(cfg, store, progress=False) == 3
  assert len(ResultsStore(path).rows) == 4
  assert stage_sweep.run(cfg, ResultsStore(path), progress=False) == 0


def test_interrupt_keeps_finished_batches(tmp_path, monkeypatch):
  """Ctrl-C during the second batch: the first batch's rows are on disk."""
  import rpd.experiments.stage_sweep as ss
  cfg = tiny_stage_sweep()
  cfg.update(rules=["pipedream"])
  real = ss.run_engine_batch
  calls = {"n": 0}

  def flaky(*a, **k):
    calls["n"] += 1
    if calls["n"] == 2:
      raise KeyboardInterrupt
    return real(*a, **k)

  monkeypatch.setattr(ss, "run_engine_batch", flaky)
  path = str(tmp_path / "r.jsonl")
  with pytest.raises(KeyboardInterrupt):
    ss.run(cfg, ResultsStore(path), progress=False)
  assert len(ResultsStore(path).rows) == 4  # S=2 batch finished
  monkeypatch.setattr(ss, "run_engine_batch", real)
  assert ss.run(cfg, ResultsStore(path), progress=False) == 4  # only S=4 reruns


def test_critical_gamma_end_to_end(tmp_path):
  cfg = tiny_critical()
  store = ResultsStore(str(tmp_path / "c.jsonl"))
  critical_gamma.run(cfg, store, progress=False)
  out = critical_gamma.plot(cfg, store, str(tmp_path))
  _nonempty(out["figures"])
  by_S = {r["S"]: r for r in out["table"]}
  # S = 1 is gradient descent: the threshold 2/L lies in the final bracket.
  assert by_S[1]["gamma_lo"] <= 2.0 <= by_S[1]["gamma_hi"] * 1.0001
  assert by_S[4]["gamma_crit"] < by_S[2]["gamma_crit"] < by_S[1]["gamma_crit"]


def test_pd_vs_localsgd_end_to_end(tmp_path):
  cfg = tiny_pd_vs_localsgd()
  store = ResultsStore(str(tmp_path / "p.jsonl"))
  ran = pd_vs_localsgd.run(cfg, store, progress=False)
  assert ran == 2 * 2 * 2 + 1 * 2  # quadratic: 2 S x (PD + H=2) x 2 gammas; LM: 2 runs
  out = pd_vs_localsgd.plot(cfg, store, str(tmp_path))
  _nonempty(out["figures"])
  assert {r["winner"] for r in out["table"]} <= {"PipeDream", "LocalSGD", "tie"}
  lm = [r for r in out["table"] if r["problem"].startswith("character")]
  assert lm and lm[0]["f_star"] == pytest.approx(0.937, abs=0.01)
  # LocalSGD reaches the time budget, no further than one round past it.
  for S in (2, 4):
    R, rec = pd_vs_localsgd.localsgd_rounds(cfg, S, 2, 16)
    assert R % rec == 0 and R * (2 * 2 * S + 1.0) >= pd_vs_localsgd.budget(cfg, S)
  # Batches in two threads (rpd reproduce --jobs 2): the same rows, the same table.
  store2 = ResultsStore(str(tmp_path / "p2.jsonl"))
  assert pd_vs_localsgd.run(cfg, store2, progress=False, jobs=2) == ran
  assert {k: r["result"] for k, r in ResultsStore(store2.path).rows.items()} == {
      k: r["result"] for k, r in store.rows.items()}
  assert pd_vs_localsgd.plot(cfg, store2, str(tmp_path / "two"))["table"] == out["table"]


def test_fit_exponent_interval_covers_truth():
  rng = np.random.default_rng(0)
  S = np.array([2, 4, 8, 16, 32])
  Y = 3.0 * S[None, :] ** 3.0 * np.exp(0.1 * rng.standard_normal((6, 5)))
  fit = common.fit_exponent_over_seeds(S, Y)
  assert fit.lo < 3.0 < fit.hi and fit.n == 6 and fit.hi - fit.lo < 0.3
  one = common.fit_exponent_over_seeds(S, Y[:1])
  assert one.n == 1 and not np.isfinite(one.lo)


def test_window_mean_from_running_means():
  x = np.arange(1, 101, dtype=float)  # per-iteration values 1..100
  k = np.array([0, 25, 50, 100])
  avg = np.array([np.nan] + [x[:kk].mean() for kk in k[1:]])
  assert common.window_mean(k, avg, 25, 50) == pytest.approx(x[25:50].mean())
  assert common.window_mean(k, avg, 0, 100) == pytest.approx(x.mean())


def test_reproduce_cli_writes_figures_csv_readme(tmp_path, monkeypatch, capsys):
  from rpd.cli import main
  tiny = tiny_critical()
  monkeypatch.setattr(cfg_cg, "get_config", lambda quick=False: tiny)
  out = tmp_path / "figs"
  assert main(["reproduce", "--quick", "--only", "critical_gamma", "--out", str(out),
               "--no-progress", "--json"]) == 0
  summary = json.loads(capsys.readouterr().out)
  assert summary["mode"] == "quick"
  for name in ("critical_gamma.png", "critical_gamma.pdf", "results.csv", "README.md",
               "results/critical_gamma.quick.jsonl"):
    assert os.path.getsize(out / name) > 0
  readme = (out / "README.md").read_text()
  assert "rpd reproduce --quick --only critical_gamma" in readme and "Finding" in readme
  assert f"CPU cores ({common.cpu_name()})" in readme  # a stated runtime names its machine
  row = json.loads((out / "results/critical_gamma.quick.jsonl").read_text().splitlines()[0])
  assert row["meta"]["cpu"] == common.cpu_name()
  assert main(["reproduce", "--only", "nope", "--out", str(out)]) == 2


def test_cpu_name_from_cpuinfo(tmp_path, monkeypatch):
  """The machine a runtime was measured on: model name and frequency from /proc/cpuinfo."""
  f = tmp_path / "cpuinfo"
  f.write_text("processor\t: 0\nmodel name\t: Intel(R)  Xeon(R) Processor\n"
               "cpu MHz\t\t: 2599.998\nprocessor\t: 1\nmodel name\t: Other\n"
               "cpu MHz\t\t: 1000.0\n")
  assert common.cpu_name(str(f)) == "Intel(R) Xeon(R) Processor, 2.6 GHz"
  f.write_text("model name\t: AMD EPYC 7B13\n")
  assert common.cpu_name(str(f)) == "AMD EPYC 7B13"
  monkeypatch.setattr(common.platform, "processor", lambda: "")
  assert common.cpu_name(str(tmp_path / "missing")) == "unknown"
  monkeypatch.setattr(common.platform, "processor", lambda: "arm")
  assert common.cpu_name(str(tmp_path / "missing2")) == "arm"


@pytest.mark.parametrize("quick", [True, False])
def test_shipped_configs_are_consistent(quick):
  """Record intervals are multiples of every S, gamma_fit is on the grid, S <= d."""
  ss = cfg_ss.get_config(quick)
  assert ss["K"] % ss["n_records"] == 0 and ss["gamma_fit"] in ss["gammas"]
  for S in ss["stages"]:
    assert (ss["K"] // ss["n_records"]) % S == 0
    assert all(S <= p["options"]["d"] for p in ss["problems"])
  assert ss["late"][1] == ss["n_records"] and ss["early"][0] >= 1
  cg = cfg_cg.get_config(quick)
  assert cg["gamma_hi"] > 2 / cg["problem"]["options"]["L"]  # bracket contains GD's 2/L
  pl = cfg_pl.get_config(quick)
  assert pl["microbatches"] % pl["n_records"] == 0
  assert all(len(p["gammas"]) >= 2 for p in pl["problems"])


def test_reproduce_text_option(tmp_path):
  """--text swaps the LM's corpus in the configs; an unreadable file is a one-line error."""
  from rpd.cli import main
  from rpd.cli.reproduce import _with_text
  cfg = _with_text(cfg_pl.get_config(quick=True), str(tmp_path / "book.txt"))
  lm = [p for p in cfg["problems"] if p["name"] == "charlm"][0]
  assert lm["options"]["text"].endswith("book.txt") and "book.txt" in lm["label"]
  assert all("text" not in p.get("options", {}) for p in cfg["problems"] if p is not lm)
  assert main(["reproduce", "--quick", "--text", str(tmp_path / "missing.txt"),
               "--out", str(tmp_path / "o")]) == 2


def test_build_problem_keeps_every_charlm_option(tmp_path):
  """The experiments' LM options (corpus, evaluation set, text) all reach make_charlm."""
  from rpd.experiments.runner import build_problem
  p = build_problem({"name": "charlm", "options": dict(n_chains=4, length=64, n_eval=32,
                                                        hidden=8, n_layers=4)}, 2)
  assert p.train_NxT.shape == (4, 64) and p.eval_next_E.shape == (32,) and p.hidden == 8
  path = tmp_path / "t.txt"
  path.write_text("abcabcabd " * 40)
  q = build_problem({"name": f"charlm:{path}", "options": dict(hidden=8, n_layers=4, C=4)}, 2)
  assert q.f_star is None and q.V == 5


def test_critical_gamma_rerun_is_a_no_op_and_ignores_extra_rows(tmp_path):
  """A rerun of a finished search runs nothing and gives the same brackets; rows in the file
  that the search did not ask for (another configuration's rounds) do not steer it."""
  cfg = tiny_critical()
  path = str(tmp_path / "c.jsonl")
  assert critical_gamma.run(cfg, ResultsStore(path), progress=False) > 0
  first = critical_gamma.plot(cfg, ResultsStore(path), str(tmp_path))["table"]
  before = open(path).read()
  assert critical_gamma.run(cfg, ResultsStore(path), progress=False) == 0
  assert open(path).read() == before
  # A stray unstable row inside the final bracket of S = 2 (as a search with a different
  # config would leave): neither the rerun nor the plot may use it.
  store = ResultsStore(path)
  lo, hi = critical_gamma._bracket(cfg, store, "pipedream", 2)
  row = next(r for r in store.rows.values() if r["config"]["S"] == 2
             and not critical_gamma._stable(r["result"]))
  stray = dict(row["config"], gamma=float(np.sqrt(lo * hi)), round=7)
  store.add([(stray, row["result"], row["meta"])])
  assert critical_gamma.run(cfg, ResultsStore(path), progress=False) == 0
  again = critical_gamma.plot(cfg, ResultsStore(path), str(tmp_path))["table"]
  assert again == first


def test_pd_vs_localsgd_panels_not_run_carry_a_note(tmp_path, monkeypatch):
  """An objective run at fewer S (the LM in quick mode) gets a note in the other panels, not
  an empty frame."""
  cfg = tiny_pd_vs_localsgd()
  cfg["problems"] = cfg["problems"][1:]  # the LM only: S = 2 run, S = 4 not
  store = ResultsStore(str(tmp_path / "p.jsonl"))
  pd_vs_localsgd.run(cfg, store, progress=False)
  figs = []
  monkeypatch.setattr(pd_vs_localsgd, "save_figure",
                      lambda fig, out_dir, name: figs.append(fig) or [])
  pd_vs_localsgd.plot(cfg, store, str(tmp_path))
  ax_run, ax_not = figs[0].axes[:2]
  assert ax_run.lines and not ax_not.lines and not ax_not.axison
  assert "not run in this mode" in " ".join(t.get_text() for t in ax_not.texts)


def test_record_metrics_subset_changes_nothing_it_keeps():
  """``metrics=`` of the engine's and LocalSGD's sweeps (what the experiments ask for):
  the iterates and every metric kept are bit for bit those of the default run, the others
  are left out, and an unknown name is an error naming it."""
  from rpd.baselines import LocalSGD
  from rpd.engine import sweep
  from rpd.experiments.runner import build_problem
  from rpd.rules import get_rule
  prob = build_problem(dict(name="quadratic", options=dict(d=8, L=1.0, mu=0.1, noise=0.1,
                                                           seed=0)), 2)
  kw = dict(gammas=[0.1, 0.5], seeds=[0, 1], K=32, record_every=8)
  for spec, wants in (("pipedream", (("loss",), ())),
                      ("rpd", (("grad_norm_sq", "stale_x_err", "stale_grad_err"),))):
    rule = get_rule(spec, 2)
    full = sweep(prob, rule, track_average=True, **kw)
    for want in wants:
      sub = sweep(prob, rule, track_average=True, metrics=want, **kw)
      np.testing.assert_array_equal(sub.x_SxD, full.x_SxD)
      kept = {"k", *want, "avg_grad_norm_sq", "avg_stale_x_err", "avg_stale_grad_err"}
      assert set(sub.metrics) == kept, (spec, want)
      for m in kept:
        np.testing.assert_array_equal(sub.metrics[m], full.metrics[m], err_msg=f"{spec} {m}")
  with pytest.raises(ValueError, match="'los'"):
    sweep(prob, get_rule("rpd", 2), metrics=("los",), **kw)
  lsgd = dict(gammas=np.array([0.1, 0.5]), seeds=np.array([0, 1]), rounds=8, record_every=2)
  full = LocalSGD(H=2).sweep(prob, **lsgd)
  for want in (("loss",),):
    sub = LocalSGD(H=2).sweep(prob, metrics=want, **lsgd)
    np.testing.assert_array_equal(sub.x_SxD, full.x_SxD)
    assert set(sub.metrics) == {"k", "time", "drift_x_err", *want}
    for m in sub.metrics:
      np.testing.assert_array_equal(sub.metrics[m], full.metrics[m], err_msg=m)
  with pytest.raises(ValueError, match="'gn'"):
    LocalSGD(H=2).sweep(prob, metrics=("gn",), **lsgd)


@pytest.mark.parametrize("spec,S", [("pipedream", 4), ("schedule:zb-h1", 3), ("sync", 2)])
def test_scanned_period_equals_unrolled_period(spec, S, monkeypatch):
  """With per-iteration metrics a program rule scans its period's updates
  (``ProgramRule._step_scanned``): the same bits as the unrolled period, realized blocks and
  delays included."""
  import jax
  from rpd.engine import run
  from rpd.experiments.runner import build_problem
  from rpd.rules import get_rule
  from rpd.rules.program_rule import ProgramRule
  prob = build_problem(dict(name="quadratic", options=dict(d=12, L=1.0, mu=0.1, noise=0.1,
                                                           seed=0)), S)
  rule = get_rule(spec, S)
  K = 8 * rule.updates_per_step
  kw = dict(gamma=0.3, K=K, key=jax.random.key(3), record_every=K // 4, track_average=True,
            instrument=True)
  scanned = run(prob, rule, **kw)
  monkeypatch.setattr(ProgramRule, "_scans_updates", lambda self, ctx: False)
  unrolled = run(prob, rule, **kw)
  np.testing.assert_array_equal(scanned.x_SxD, unrolled.x_SxD)
  for m in unrolled.metrics:
    np.testing.assert_array_equal(scanned.metrics[m], unrolled.metrics[m], err_msg=m)
  for m in ("block", "tau"):
    np.testing.assert_array_equal(scanned.realized[m], unrolled.realized[m], err_msg=m)


def test_release_compiled_programs_empties_jax_caches_above_the_fraction():
  """Each compiled program holds memory mappings and memory until JAX's caches drop it; above
  the fraction of either limit the caches are emptied, below it nothing happens."""
  import jax
  import jax.numpy as jnp
  f = jax.jit(lambda x: jnp.sin(x) * 3.0)
  f(jnp.ones(3))
  assert f._cache_size() == 1
  assert not common.release_compiled_programs(0.5, pressure=lambda: 0.5)
  assert not common.release_compiled_programs(0.5, pressure=lambda: None)  # not Linux
  assert f._cache_size() == 1
  assert common.release_compiled_programs(0.5, pressure=lambda: 0.501)
  assert f._cache_size() == 0
  p0 = common._pressure()
  if p0 is not None:  # Linux: the larger used fraction, read here independently
    with open("/proc/self/maps") as fh:
      maps = len(fh.readlines())
    with open("/proc/sys/vm/max_map_count") as fh:
      cap = int(fh.read())
    with open("/proc/self/status") as fh:
      rss = int([ln for ln in fh if ln.startswith("VmRSS:")][0].split()[1])
    with open("/proc/meminfo") as fh:
      total = int([ln for ln in fh if ln.startswith("MemTotal:")][0].split()[1])
    assert 0 < p0 < 1
    assert p0 == pytest.approx(max(maps / cap, rss / total), rel=0.02)

    with open("/proc/self/maps") as fh:
      n0 = len(fh.readlines())
    for n in range(2, 7):
      f(jnp.ones(n)).block_until_ready()
    with open("/proc/self/maps") as fh:
      assert len(fh.readlines()) >= n0 + 5


def test_every_batch_releases_compiled_programs(tmp_path, monkeypatch):
  """The runner's engine and LocalSGD batches call the release after each batch (a full run
  compiles thousands of programs in one process; the stability experiment's rows: in
  tests/test_stability.py)."""
  from rpd.experiments import runner
  from rpd.simtime import CostModel
  calls = []
  monkeypatch.setattr(runner, "release_compiled_programs", lambda: calls.append("runner"))
  store = ResultsStore(str(tmp_path / "r.jsonl"))
  assert runner.run_engine_batch(store, {"experiment": "t"}, QUAD, "pipedream", 2, [0.1],
                                 [0], K=8, record_every=4) == 1
  assert runner.run_localsgd_batch(store, {"experiment": "t"}, QUAD, 2, 2, [0.1], [0],
                                   rounds=2, record_every=1, cost=CostModel()) == 1
  assert calls == ["runner", "runner"]


def test_pressure_is_the_larger_of_mappings_and_memory(tmp_path):
  """A fake /proc: whichever of the two fractions is larger is the pressure."""
  (tmp_path / "sys" / "vm").mkdir(parents=True)
  (tmp_path / "self").mkdir()
  (tmp_path / "sys" / "vm" / "max_map_count").write_text("1000\n")
  (tmp_path / "meminfo").write_text("MemTotal:       1000 kB\nMemFree:  10 kB\n")
  for maps, rss, want in ((100, 700, 0.7), (600, 200, 0.6)):
    (tmp_path / "self" / "maps").write_text("m\n" * maps)
    (tmp_path / "self" / "status").write_text(f"Name: x\nVmRSS:\t  {rss} kB\n")
    assert common._pressure(str(tmp_path)) == pytest.approx(want)
  assert common._pressure(str(tmp_path / "missing")) is None
