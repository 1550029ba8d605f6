"""``rpd train``: JSON keys, metrics file, exact semantics, bad input (exit 2, nothing written)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rpd.cli import main


def run_cli(*args, capsys):
  try:
    code = main(list(args))
  except SystemExit as e:  # argparse's own errors
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


def test_json_keys_and_metrics_file(tmp_path, capsys):
  code, out, _ = run_cli("train", "--problem", "quadratic", "--stages", "4", "--rule",
                         "pipedream", "--lr", "0.1", "--steps", "256", "--seed", "1",
                         "--noise", "0.1", "--record-every", "64", "--out", str(tmp_path),
                         "--json", capsys=capsys)
  assert code == 0
  rec = json.loads(out)
  for key in ["final_loss", "initial_loss", "diverged", "steps", "stages", "rule", "lr",
              "metrics_file"]:
    assert key in rec
  assert rec["steps"] == 256 and rec["stages"] == 4 and rec["rule"] == "pipedream"
  assert rec["diverged"] is False and rec["initial_loss"] == 0.0
  rows = np.loadtxt(rec["metrics_file"], delimiter=",", skiprows=1)
  assert rows.shape == (5, 6) and list(rows[:, 0]) == [0, 64, 128, 192, 256]  # + sim_time
  assert rows[-1, 1] == pytest.approx(rec["final_loss"])
  meta = json.load(open(tmp_path / "run.json"))["metadata"]
  assert {"commit", "jax", "devices", "seed"} <= set(meta)


def test_delayed_gd_semantics_from_the_cli(tmp_path, capsys):
  """S = 1, constant:TAU, noise 0, x0 from a file: x_{k+1} = x_k - gamma (A x_{k-TAU} - b)."""
  rng = np.random.default_rng(0)
  M = rng.standard_normal((5, 5))
  A = M @ M.T / 5 + 0.1 * np.eye(5)
  b = rng.standard_normal(5)
  x0 = rng.standard_normal(5)
  np.savez(tmp_path / "q.npz", A=A, b=b)
  np.save(tmp_path / "x0.npy", x0)
  gamma, tau, K = 0.1, 2, 30
  xs = [x0]
  for k in range(K):
    xs.append(xs[-1] - gamma * (A @ xs[max(k - tau, 0)] - b))
  code, out, _ = run_cli("train", "--problem", f"quadratic:{tmp_path / 'q.npz'}", "--stages",
                         "1", "--rule", f"constant:{tau}", "--lr", str(gamma), "--steps",
                         str(K), "--noise", "0", "--x0", str(tmp_path / "x0.npy"),
                         "--record-every", "1", "--out", str(tmp_path / "o"), "--json",
                         capsys=capsys)
  assert code == 0
  rec = json.loads(out)
  f = lambda x: 0.5 * x @ A @ x - b @ x
  assert rec["final_loss"] == pytest.approx(f(xs[-1]), abs=1e-12)
  assert rec["initial_loss"] == pytest.approx(f(x0), abs=1e-12)


@pytest.mark.parametrize("args,needle", [
    (["--stages", "0"], "--stages"),
    (["--stages", "65"], "--stages 65"),
    (["--lr", "0"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--rule", "constant:-1"], "-1"),
    (["--rule", "bogus"], "bogus"),
    (["--optimizer", "lion"], "lion"),
    (["--problem", "cubic"], "cubic"),
    (["--problem", "quadratic:/no/such.npz"], "/no/such.npz"),
    (["--rule", "pipedream", "--steps", "10"], "--steps 10"),
    (["--record-every", "7"], "--record-every 7"),
    (["--stages", "6", "--devices", "4"], "--devices 4"),
])
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, needle):
  out_dir = tmp_path / "out"
  code, out, err = run_cli("train", "--steps", "64", "--out", str(out_dir), *args,
                           capsys=capsys)
  assert code == 2
  assert err.count("\n") == 1 and needle in err and "Traceback" not in err
  assert not out_dir.exists()


def test_bad_npz_shape(tmp_path, capsys):
  np.savez(tmp_path / "x.npz", X=np.ones((4, 3)), y=np.ones(5))
  code, _, err = run_cli("train", "--problem", f"logistic:{tmp_path / 'x.npz'}", "--stages",
                         "1", "--out", str(tmp_path / "o"), capsys=capsys)
  assert code == 2 and "y of length n" in err and not (tmp_path / "o").exists()


def test_divergence_reported_not_crashed(tmp_path, capsys):
  code, out, _ = run_cli("train", "--rule", "constant:5", "--lr", "1e6", "--steps", "800",
                         "--out", str(tmp_path), "--json", capsys=capsys)
  assert code == 3  # EXIT_DIVERGED
  rec = json.loads(out)
  assert rec["diverged"] is True and rec["diverged_at"] >= 0


def test_python_dash_m_works(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-m", "rpd", "train", "--steps", "8", "--stages", "2",
                         "--rule", "none", "--out", str(tmp_path), "--json"],
                        capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert json.loads(proc.stdout)["steps"] == 8


@pytest.mark.parametrize("rule", ["pipedream", "schedule:gpipe"])
def test_simulated_time_from_the_one_cost_model(tmp_path, capsys, rule):
  """F = B = 1 (rpd.simtime.CostModel's defaults), the model rpd reproduce uses too."""
  S, n = 4, 16
  code, out, _ = run_cli("train", "--stages", str(S), "--rule", rule, "--steps", str(S * n),
                         "--out", str(tmp_path), "--json", capsys=capsys)
  assert code == 0
  rec = json.loads(out)
  from rpd import simtime
  from rpd.schedules import get_schedule
  timed = get_schedule(rule.split(":")[-1]).timed(S, n, 1, {"F": 1, "B": 1})
  if rule == "pipedream":  # fill + n * period = the makespan of n microbatches, no flush
    assert rec["sim_time"] == pytest.approx(timed.makespan)
    # and what rpd reproduce computes (experiments/pd_vs_localsgd.py) for the same run
    assert rec["sim_time"] == pytest.approx(simtime.pipedream_time(n, S))
  else:  # one microbatch per synchronous update: a whole fill-drain, S * (F + B), each
    assert rec["sim_time"] == pytest.approx(n * S * 2)
  rows = np.loadtxt(rec["metrics_file"], delimiter=",", skiprows=1)
  assert np.all(np.diff(rows[:, -1]) > 0)


def test_sigint_stops_keeps_what_finished_and_exits_130(tmp_path):
  import signal
  import time
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  proc = subprocess.Popen([sys.executable, "-m", "rpd", "train", "--steps", str(1 << 28),
                           "--stages", "2", "--rule", "none", "--dim", "4",
                           "--out", str(tmp_path), "--json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
  line = proc.stderr.readline()  # printed once the SIGINT handler is in place
  assert "Ctrl-C" in line, line
  time.sleep(0.5)
  proc.send_signal(signal.SIGINT)
  out, err = proc.communicate(timeout=120)
  assert proc.returncode == 130, err
  assert "interrupted after" in err
  rec = json.loads(out)
  assert rec["interrupted"] is True and rec["steps"] < 1 << 28
  rows = np.loadtxt(rec["metrics_file"], delimiter=",", skiprows=1, ndmin=2)
  assert rows[-1, 0] == rec["steps"]
