"""``rpd reproduce`` with real signals in a subprocess: a rerun does no new training and
leaves ``results.csv`` byte-identical; a run stopped by SIGINT (exit 130, no crash) or SIGKILL
and then resumed ends byte-identical to one clean run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time


# A tiny critical-step-size search (pipedream, S = 1, 2, 4; two bisection rounds): every
# bisection round depends on the previous round's results, the case a resume could get wrong.
DRIVER = textwrap.dedent("""
    import sys
    from rpd.experiments.configs import critical_gamma as cg
    real = cg.get_config
    def tiny(quick=False):
      cfg = real(quick=True)
      cfg.update(problem=dict(label="quadratic", name="quadratic",
                              options=dict(d=16, L=1.0, mu=0.1, noise=0.0, seed=0)),
                 rules=["pipedream"], stages=[1, 2, 4], grid=6, rounds=3,
                 K_microbatches=8)
      return cfg
    cg.get_config = tiny
    from rpd.cli import main
    sys.exit(main(["reproduce", "--quick", "--only", "critical_gamma", "--no-progress",
                   "--json", "--out", sys.argv[1]]))
""")


def _start(out):
  # The six runs share one persistent compilation cache (rpd.cache) of this test: the first
  # compiles, the others load its programs (a run's numbers do not depend on it).
  env = dict(os.environ, JAX_PLATFORMS="cpu", RPD_CACHE_DIR=str(out.parent / "jax-cache"))
  env.pop("RPD_NO_CACHE", None)
  return subprocess.Popen([sys.executable, "-c", DRIVER, str(out)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env)


def _finish(out):
  p = _start(out)
  o, e = p.communicate(timeout=300)
  assert p.returncode == 0, e
  return json.loads(o)


def _lines(out):
  """Complete rows in the results file (a line cut short by SIGKILL does not count)."""
  path = out / "results" / "critical_gamma.quick.jsonl"
  return path.read_text().count("\n") if path.exists() else 0


def _stop_midway(out, sig):
  p = _start(out)
  t0 = time.time()
  while _lines(out) < 1 and p.poll() is None and time.time() - t0 < 120:
    time.sleep(0.02)
  assert p.poll() is None, "finished before the signal: make the driver's search longer"
  p.send_signal(sig)
  o, e = p.communicate(timeout=120)
  return p.returncode, e, _lines(out)


def test_rerun_and_interrupted_runs_match_one_clean_run(tmp_path):
  clean = tmp_path / "clean"
  first = _finish(clean)
  assert first["experiments"][0]["ran"] == 3 * 6 * 3  # S x grid x rounds
  csv = (clean / "results.csv").read_bytes()
  rows = (clean / "results" / "critical_gamma.quick.jsonl").read_text()
  again = _finish(clean)
  assert again["experiments"][0]["ran"] == 0  # no new training
  assert (clean / "results.csv").read_bytes() == csv
  assert (clean / "results" / "critical_gamma.quick.jsonl").read_text() == rows

  for sig, want in ((signal.SIGINT, 130), (signal.SIGKILL, -signal.SIGKILL)):
    out = tmp_path / sig.name
    code, err, n = _stop_midway(out, sig)
    assert code == want, err  # SIGINT: exit 130, not a crash (-11) at interpreter shutdown
    if sig == signal.SIGINT:
      assert "Traceback" not in err and "finished results are kept" in err
      assert 1 <= n < 3 * 6 * 3  # stopped between batches, finished rows kept
    resumed = _finish(out)
    assert resumed["experiments"][0]["ran"] == 3 * 6 * 3 - n
    assert (out / "results.csv").read_bytes() == csv, sig.name


# Two experiments at once (--jobs 2, each in a thread of its own): the tiny search above and a
# tiny stage sweep with the tuned-rate figure drawn from its runs.
DRIVER2 = DRIVER.replace("cg.get_config = tiny", textwrap.dedent("""\
    cg.get_config = tiny
    from rpd.experiments.configs import stage_sweep as ss
    real_ss = ss.get_config
    def tiny_ss(quick=False):
      cfg = real_ss(quick=True)
      cfg.update(problems=[cfg["problems"][1]], stages=[1, 2, 4], gammas=[0.01, 0.1],
                 seeds=[0, 1], K=64)
      cfg["problems"][0]["options"]["d"] = 8
      return cfg
    ss.get_config = tiny_ss""")).replace(
    '"--only", "critical_gamma"', '"--only", "critical_gamma,stage_sweep,tuned_rate", '
    '"--jobs", sys.argv[2]')


def _start2(out, jobs):
  env = dict(os.environ, JAX_PLATFORMS="cpu", RPD_CACHE_DIR=str(out.parent / "jax-cache"))
  env.pop("RPD_NO_CACHE", None)
  return subprocess.Popen([sys.executable, "-c", DRIVER2, str(out), str(jobs)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def test_parallel_lanes_match_one_lane_and_stop_on_sigint(tmp_path):
  runs = {}
  for jobs in (1, 2):
    p = _start2(tmp_path / f"jobs{jobs}", jobs)
    o, e = p.communicate(timeout=300)
    assert p.returncode == 0, e
    runs[jobs] = json.loads(o)
  ran = {e["name"]: e["ran"] for e in runs[1]["experiments"]}
  assert ran == {e["name"]: e["ran"] for e in runs[2]["experiments"]}
  assert ran["critical_gamma"] == 3 * 6 * 3 and ran["stage_sweep"] == 2 * 3 * 2 * 2
  csv = (tmp_path / "jobs1" / "results.csv").read_bytes()
  assert (tmp_path / "jobs2" / "results.csv").read_bytes() == csv
  # Ctrl-C while both lanes run: both stop after their current batch, exit 130, and a
  # rerun finishes with the same results as one clean run.
  out = tmp_path / "stopped"
  p = _start2(out, 2)
  t0 = time.time()
  while _lines(out) < 1 and p.poll() is None and time.time() - t0 < 120:
    time.sleep(0.02)
  assert p.poll() is None, "finished before the signal: make the driver's search longer"
  p.send_signal(signal.SIGINT)
  o, e = p.communicate(timeout=120)
  assert p.returncode == 130, e
  assert "Traceback" not in e and "finished results are kept" in e
  p = _start2(out, 2)
  o, e = p.communicate(timeout=300)
  assert p.returncode == 0, e
  assert (out / "results.csv").read_bytes() == csv
