"""``rpd theory lemma``: exact E||x^k - x_hat^k||^2 against an independent NumPy Monte Carlo.

The Monte Carlo below is written from the semantics of the command's help (blocks as
``numpy.array_split``, ``x_hat`` block ``j`` = ``x_j^{max(0, k - T[i_k][j])}``, Gaussian
noise with the given covariance restricted to the updated block) and shares no code with
``rpd.theory``.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

from rpd.cli import main


def _monte_carlo(H, T, gamma, K, Sigma, x0, order, n_paths=40000, seed=0):
  """Mean over paths of ||x^k - x_hat^k||^2 and its standard error, k = 0..K."""
  rng = np.random.default_rng(seed)
  d = H.shape[0]
  S = T.shape[-2]
  edges = np.cumsum([0] + [d // S + (1 if b < d % S else 0) for b in range(S)])
  owner = np.repeat(np.arange(S), np.diff(edges))  # block of each coordinate
  Lc = np.linalg.cholesky(Sigma + 1e-300 * np.eye(d)) if np.any(Sigma) else np.zeros((d, d))
  hist = np.zeros((K + 1, n_paths, d))
  hist[0] = x0
  out, sem = np.zeros(K + 1), np.zeros(K + 1)
  for k in range(K + 1):
    Tk = T[k] if T.ndim == 3 else T
    i = rng.integers(S, size=n_paths) if order == "uniform" else np.full(n_paths, k % S)
    lag = Tk[i][:, owner]  # (paths, d): delay of each coordinate's block for this i
    src = np.maximum(0, k - lag)
    xhat = hist[src, np.arange(n_paths)[:, None], np.arange(d)[None, :]]
    err = np.sum((hist[k] - xhat) ** 2, axis=1)
    out[k], sem[k] = err.mean(), err.std(ddof=1) / np.sqrt(n_paths)
    if k == K:
      break
    noise = rng.standard_normal((n_paths, d)) @ Lc.T
    g = xhat @ H + noise  # H symmetric
    mask = owner[None, :] == i[:, None]
    hist[k + 1] = hist[k] - gamma * np.where(mask, g, 0.0)
  return out, sem


def _files(tmp_path, **arrays):
  paths = {}
  for name, arr in arrays.items():
    p = tmp_path / f"{name}.npy"
    np.save(p, arr)
    paths[name] = str(p)
  return paths


def _exit_and_stderr(capsys, argv):
  """``(exit code, stderr)`` of ``rpd ARGV`` in process (argparse errors raise SystemExit)."""
  try:
    code = main(argv)
  except SystemExit as e:
    code = e.code
  return code, capsys.readouterr().err


def _run_json(capsys, argv):
  assert main(argv) == 0
  return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("order", ["uniform", "cyclic"])
def test_exact_equals_an_independent_monte_carlo(tmp_path, capsys, order):
  # d = 5 > S = 3: blocks {0, 1}, {2, 3}, {4}; indefinite H, feedback (block read fresh by
  # itself), correlated noise, nonzero start.
  rng = np.random.default_rng(1)
  M = rng.standard_normal((5, 5))
  H = (M + M.T) / 2
  T = np.array([[0, 3, 2], [4, 0, 1], [2, 5, 0]])
  A = rng.standard_normal((5, 5)) * 0.5
  V = A @ A.T
  x0 = rng.standard_normal(5)
  f = _files(tmp_path, H=H, T=T, V=V, x0=x0)
  K, gamma = 14, 0.12
  out = _run_json(capsys, ["theory", "lemma", "--hessian", f["H"], "--table", f["T"],
                           "--gamma", str(gamma), "--steps", str(K), "--noise-var", f["V"],
                           "--x0", f["x0"], "--order", order, "--json"])
  assert out["blocks"] == [[0, 2], [2, 4], [4, 5]] and out["tau"] == 5
  exact = np.array(out["stale_x_exact"])
  mc, sem = _monte_carlo(H, T, gamma, K, V, x0, order)
  assert exact.shape == (K + 1,) and exact[0] == 0.0 and exact[1:].min() > 0
  assert np.all(np.abs(exact - mc) <= 5 * sem + 1e-12), np.abs(exact - mc) / (sem + 1e-300)
  assert set(out["bound"]) == {"cs", "martingale", "block"}
  assert all(len(b) == K + 1 for b in out["bound"].values())


def test_time_varying_table_and_scalar_noise(tmp_path, capsys):
  rng = np.random.default_rng(2)
  M = rng.standard_normal((3, 3))
  H = (M + M.T) / 2
  K = 10
  T = rng.integers(0, 4, size=(K + 1, 3, 3))
  f = _files(tmp_path, H=H, T=T)
  out = _run_json(capsys, ["theory", "lemma", "--hessian", f["H"], "--table", f["T"],
                           "--gamma", "0.2", "--steps", str(K), "--noise", "0.7", "--json"])
  mc, sem = _monte_carlo(H, T, 0.2, K, 0.49 * np.eye(3), np.zeros(3), "uniform")
  exact = np.array(out["stale_x_exact"])
  assert np.all(np.abs(exact - mc) <= 5 * sem + 1e-12)
  # Inside the assumptions (uniform order, fixed-in-k tables per i_k): every lemma holds.
  assert all(out["holds"].values())


def test_cs_bound_is_the_hand_formula_on_a_constant_gradient(tmp_path, capsys):
  # S = 1, H = 0 and no noise: x moves by gamma g0 ... no: with H = 0 and c = 0 nothing
  # moves, so D = 0; use the noise instead: D_k = gamma^2 sigma^2 min(k, tau) exactly.
  f = _files(tmp_path, H=np.zeros((1, 1)), T=np.array([[3]]))
  out = _run_json(capsys, ["theory", "lemma", "--hessian", f["H"], "--table", f["T"],
                           "--gamma", "0.5", "--steps", "6", "--noise", "2", "--json"])
  hand = [0.25 * 4 * min(k, 3) for k in range(7)]
  assert out["stale_x_exact"] == pytest.approx(hand, abs=1e-12)
  # cs: gamma^2 (tau W + tau^2 sigma2 / S) with W = 0 (no gradient): 0.25 * 9 * 4 = 9.
  assert out["bound"]["cs"] == pytest.approx([9.0] * 7)
  # martingale: gamma^2 (2 tau W + 2 tau sigma2 / S) = 0.25 * 6 * 4 = 6.
  assert out["bound"]["martingale"] == pytest.approx([6.0] * 7)


@pytest.mark.parametrize("bad, needle", [
    ({"H": "missing"}, "--hessian"),
    ({"H": np.zeros((2, 3))}, "square"),
    ({"H": np.array([[0.0, 1.0], [2.0, 0.0]])}, "not symmetric"),
    ({"T": np.array([[0, -1], [1, 0]])}, "-1"),
    ({"T": np.zeros((2, 3), int)}, "S x S"),
    ({"T": np.zeros((3, 3), int)}, "d = 2 < S"),
    ({"T": np.zeros((2, 2, 2), int)}, "time-varying"),
    ({"T": np.array([[0.5, 0], [0, 0]])}, "integers"),
    ({"x0": np.zeros(3)}, "--x0"),
    ({"V": np.zeros(3)}, "--noise-var"),
    ({"V": np.array([-1.0, 1.0])}, "-1.0"),
    ({"H": np.array([[np.nan, 0], [0, 1.0]])}, "non-finite"),
])
def test_bad_files_one_line_exit_2(tmp_path, capsys, bad, needle):
  arrays = {"H": np.eye(2), "T": np.array([[0, 1], [2, 0]]), "x0": np.zeros(2),
            "V": np.ones(2)}
  arrays.update({k: v for k, v in bad.items() if not isinstance(v, str)})
  f = _files(tmp_path, **arrays)
  if isinstance(bad.get("H"), str):
    f["H"] = str(tmp_path / "nosuch.npy")
  argv = ["theory", "lemma", "--hessian", f["H"], "--table", f["T"], "--gamma", "0.1",
          "--steps", "4", "--x0", f["x0"], "--noise-var", f["V"]]
  code, err = _exit_and_stderr(capsys, argv)
  assert code == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and needle in lines[0], err


@pytest.mark.parametrize("extra, needle", [
    (["--gamma", "-1"], "-1"), (["--steps", "0"], "0"), (["--noise", "nan"], "nan"),
    (["--noise", "1", "--noise-var", "V"], "--noise-var"), (["--order", "zig"], "zig"),
])
def test_bad_values_one_line_exit_2(tmp_path, capsys, extra, needle):
  f = _files(tmp_path, H=np.eye(2), T=np.array([[0, 1], [2, 0]]), V=np.ones(2))
  extra = [f["V"] if e == "V" else e for e in extra]
  base = {"--hessian": f["H"], "--table": f["T"], "--gamma": "0.1", "--steps": "4"}
  for k in [e for e in extra if e.startswith("--")]:
    base.pop(k, None)
  argv = ["theory", "lemma", *[x for kv in base.items() for x in kv], *extra]
  code, err = _exit_and_stderr(capsys, argv)
  assert code == 2
  lines = err.strip().splitlines()
  assert len(lines) == 1 and needle in lines[0], err


def test_bad_file_from_the_shell_has_no_traceback(tmp_path):
  f = _files(tmp_path, H=np.zeros((2, 3)), T=np.zeros((2, 2), int))
  r = subprocess.run([sys.executable, "-m", "rpd", "theory", "lemma", "--hessian", f["H"],
                      "--table", f["T"], "--gamma", "0.1", "--steps", "3"],
                     capture_output=True, text=True)
  assert r.returncode == 2 and "Traceback" not in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1 and "square" in r.stderr
