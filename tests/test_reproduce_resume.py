"""``rpd reproduce`` with real signals in a subprocess: a run stopped by SIGINT (exit 130, no
crash) and then by SIGKILL, and resumed, ends byte-identical to one clean run; a rerun of a
finished folder does no new training and leaves ``results.csv`` byte-identical; two lanes
(``--jobs 2``) give the same results as one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time


# Two experiments at once (``--jobs N``, each in a thread of its own): a tiny critical-step-size
# search (pipedream, S = 1, 2, 4; a grid of 6, three bisection rounds: every round depends on
# the previous round's results, the case a resume could get wrong) and a tiny stage sweep with
# the tuned-rate figure drawn from its runs.
DRIVER = textwrap.dedent("""
    import sys
    from rpd.experiments.configs import critical_gamma as cg, stage_sweep as ss
    real, real_ss = cg.get_config, ss.get_config
    def tiny(quick=False):
      cfg = real(quick=True)
      cfg.update(problem=dict(label="quadratic", name="quadratic",
                              options=dict(d=16, L=1.0, mu=0.1, noise=0.0, seed=0)),
                 rules=["pipedream"], stages=[1, 2, 4], grid=6, rounds=3,
                 K_microbatches=8)
      return cfg
    def tiny_ss(quick=False):
      cfg = real_ss(quick=True)
      cfg.update(problems=[cfg["problems"][1]], stages=[1, 2, 4], gammas=[0.01, 0.1],
                 seeds=[0, 1], K=64)
      cfg["problems"][0]["options"]["d"] = 8
      return cfg
    cg.get_config, ss.get_config = tiny, tiny_ss
    from rpd.cli import main
    sys.exit(main(["reproduce", "--quick", "--only", "critical_gamma,stage_sweep,tuned_rate",
                   "--jobs", sys.argv[2], "--no-progress", "--json", "--out", sys.argv[1]]))
""")
# trainings per experiment: S x grid x rounds; rules x S x gammas x seeds; none (drawn from
# the stage sweep's runs)
RAN = {"critical_gamma": 3 * 6 * 3, "stage_sweep": 2 * 3 * 2 * 2, "tuned_rate": 0}


def _start(out, jobs):
  # The runs share one persistent compilation cache (rpd.cache) of this test: the first
  # compiles, the others load its programs (a run's numbers do not depend on it).
  env = dict(os.environ, JAX_PLATFORMS="cpu", RPD_CACHE_DIR=str(out.parent / "jax-cache"))
  env.pop("RPD_NO_CACHE", None)
  return subprocess.Popen([sys.executable, "-c", DRIVER, str(out), str(jobs)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(out, jobs):
  p = _start(out, jobs)
  o, e = p.communicate(timeout=300)
  assert p.returncode == 0, e
  return {x["name"]: x["ran"] for x in json.loads(o)["experiments"]}


def _lines(out, name="critical_gamma"):
  """Complete rows in an experiment's results file (a line cut short by SIGKILL does not
  count)."""
  path = out / "results" / f"{name}.quick.jsonl"
  return path.read_text().count("\n") if path.exists() else 0


def _stop_midway(out, sig, jobs, after):
  """Start a run, send ``sig`` once the results files hold more than ``after`` complete rows
  in all, and return its exit code, stderr and rows per experiment."""
  p = _start(out, jobs)
  t0 = time.time()
  while _total(out) <= after and p.poll() is None and time.time() - t0 < 120:
    time.sleep(0.02)
  assert p.poll() is None, "finished before the signal: make the driver's search longer"
  p.send_signal(sig)
  o, e = p.communicate(timeout=120)
  return p.returncode, e, {name: _lines(out, name) for name in RAN}


def _total(out):
  return sum(_lines(out, name) for name in RAN)


def test_interrupted_runs_resume_to_one_clean_run_and_a_rerun_trains_nothing(tmp_path):
  clean = tmp_path / "clean"
  assert _finish(clean, 1) == RAN  # one lane
  assert {name: _lines(clean, name) for name in RAN} == RAN  # one row per training
  csv = (clean / "results.csv").read_bytes()

  # One folder, stopped twice: Ctrl-C while both lanes run (both stop after their current
  # batch; exit 130, no crash), then SIGKILL of a one-lane resume once it has added a row.
  # The last resume (two lanes) trains only what is missing and ends byte-identical to the
  # clean one-lane run: rows computed in one lane or two, before or after a stop, agree.
  out = tmp_path / "stopped"
  code, err, n1 = _stop_midway(out, signal.SIGINT, 2, after=0)
  assert code == 130, err  # not a crash (-11) at interpreter shutdown
  assert "Traceback" not in err and "finished results are kept" in err
  assert 1 <= sum(n1.values()) < sum(RAN.values())
  code, err, n2 = _stop_midway(out, signal.SIGKILL, 1, after=sum(n1.values()))
  assert code == -signal.SIGKILL, err
  assert sum(n1.values()) < sum(n2.values()) < sum(RAN.values())
  assert all(n2[name] >= n1[name] for name in RAN)  # nothing finished was lost
  assert _finish(out, 2) == {name: RAN[name] - n2[name] for name in RAN}
  assert (out / "results.csv").read_bytes() == csv

  # A rerun of the finished folder trains nothing and rewrites nothing.
  rows = (out / "results" / "critical_gamma.quick.jsonl").read_text()
  assert _finish(out, 1) == dict.fromkeys(RAN, 0)
  assert (out / "results.csv").read_bytes() == csv
  assert (out / "results" / "critical_gamma.quick.jsonl").read_text() == rows
