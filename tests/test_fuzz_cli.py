"""Malformed values of every option and malformed files of every accepted format, fed to every
command: each case exits with code 2 and one line on stderr naming the bad value, writes
nothing, and finishes in seconds.

One row per case in ``CASES``: ``(argv, needle)``; ``{d}`` in an argument is the folder of
the malformed input files (made by ``bad_files``), ``needle`` must appear in the error line.
The commands run in-process (``rpd.cli.main``) so the table is fast; ``SUBPROCESS`` repeats a
few through ``python -m rpd``. New commands: add rows.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from rpd.cli import main

# Cases waiting for a fix in a file owned by another change (strict: passing fails, so the
# mark is removed when fixed). Key: the case id.


def _files(d):
  """Malformed inputs of every accepted format in folder ``d``."""
  os.makedirs(d, exist_ok=True)
  j = lambda n: os.path.join(d, n)
  open(j("text.npy"), "w").write("hello, not an array\n")
  open(j("text.npz"), "w").write("hello, not an archive\n")
  np.save(j("empty.npy"), np.zeros(0))
  np.save(j("empty2d.npy"), np.zeros((0, 0), np.int64))
  np.save(j("matrix.npy"), np.ones((4, 4)))
  np.save(j("vec3.npy"), np.ones(3))
  np.save(j("nan.npy"), np.full(64, np.nan))
  np.save(j("bool.npy"), np.ones((4, 4), bool))
  np.save(j("frac.npy"), np.full((4, 4), 0.5))
  np.save(j("neg.npy"), -np.ones((4, 4), np.int64))
  np.save(j("huge.npy"), np.full((4, 4), 2**40, np.int64))
  np.save(j("cplx.npy"), np.ones(64, complex))
  np.save(j("strs.npy"), np.array(["a"] * 64))
  np.save(j("obj.npy"), np.array([{}], dtype=object), allow_pickle=True)
  with open(j("trunc.npy"), "wb") as f:
    np.save(f, np.ones(64))
  with open(j("trunc.npy"), "r+b") as f:
    f.truncate(100)
  np.savez(j("arr.npz"), x=np.ones(64))
  np.savez(j("indef.npz"), A=np.diag([1.0, -1.0]), b=np.ones(2))
  np.savez(j("zero.npz"), A=np.zeros((2, 2)), b=np.ones(2))
  np.savez(j("unbounded.npz"), A=np.diag([1.0, 0.0]), b=np.ones(2))
  np.savez(j("nonsym.npz"), A=np.array([[1.0, 2.0], [0.0, 1.0]]), b=np.ones(2))
  np.savez(j("noB.npz"), A=np.eye(2))
  np.savez(j("shapes.npz"), A=np.eye(2), b=np.ones(3))
  np.savez(j("emptyA.npz"), A=np.zeros((0, 0)), b=np.zeros(0))
  np.savez(j("strA.npz"), A=np.array([["a"]]), b=np.ones(1))
  np.savez(j("boolA.npz"), A=np.eye(2, dtype=bool), b=np.ones(2))
  np.savez(j("nanA.npz"), A=np.full((2, 2), np.nan), b=np.ones(2))
  np.savez(j("noY.npz"), X=np.ones((4, 2)))
  np.savez(j("labels.npz"), X=np.ones((3, 2)), y=np.array([0, 1, 2]))
  np.savez(j("X1d.npz"), X=np.ones(4), y=np.ones(4))
  np.savez(j("emptyX.npz"), X=np.zeros((0, 2)), y=np.zeros(0))
  open(j("empty.txt"), "w").close()
  open(j("short.txt"), "w").write("abcabc")
  open(j("onechar.txt"), "w").write("a" * 5000)
  open(j("latin1.txt"), "wb").write(("caf\xe9 " * 500).encode("latin-1"))
  open(j("file"), "w").write("x")


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
  d = str(tmp_path_factory.mktemp("bad"))
  _files(d)
  return d


T = ["train", "--steps", "16"]
Q = "quadratic:{d}/"
CASES = [
    # rpd train: option values
    (T + ["--lr", "nan"], "nan"), (T + ["--lr", "inf"], "inf"), (T + ["--lr", "-1"], "-1"),
    (T + ["--lr", "0"], "0"), (T + ["--lr", "abc"], "abc"), (T + ["--lr", ""], "''"),
    (["train", "--steps", "0"], "0"), (["train", "--steps", "1.5"], "1.5"),
    (["train", "--steps", "-4"], "-4"), (["train", "--steps", str(10**12)], str(10**12)),
    (T + ["--stages", "0"], "0"), (T + ["--stages", "x"], "x"), (T + ["--stages", "65"], "65"),
    (T + ["--seed", str(2**31)], str(2**31)), (T + ["--seed", str(10**30)], str(10**30)),
    (T + ["--seed", "1.5"], "1.5"), (T + ["--problem-seed", str(-2**40)], str(-2**40)),
    (T + ["--noise", "-1"], "-1"), (T + ["--noise", "nan"], "nan"), (T + ["--dim", "0"], "0"),
    (T + ["--samples", "0", "--problem", "logistic"], "0"),
    (T + ["--optimizer", "lbfgs"], "lbfgs"), (T + ["--batch", "0"], "0"),
    (T + ["--record-every", "0"], "0"), (T + ["--record-every", "5"], "5"),
    (T + ["--devices", "0"], "0"), (T + ["--devices", "1000"], "1000"),
    (T + ["--devices", "3", "--stages", "4"], "3"),
    (T + ["--problem", "cubic"], "cubic"), (T + ["--problem", "logistic:nowhere"], "nowhere"),
    (T + ["--problem", "charlm", "--stages", "17"], "17"),
    (T + ["--rule", "nosuch"], "nosuch"), (T + ["--rule", "constant:-1"], "-1"),
    (T + ["--rule", "constant:x"], "x"), (T + ["--rule", "constant"], "constant"),
    (T + ["--rule", f"constant:{10**12}"], str(10**12)),
    (T + ["--rule", "rpd:uniform:x"], "x"), (T + ["--rule", "rpd:gauss"], "gauss"),
    (T + ["--rule", "schedule:nosuch"], "nosuch"), (T + ["--rule", "pipedream", "--steps", "6"], "6"),
    (T + ["--rule", "pipedream", "--dim", "1024", "--stages", "512"], "512"),
    (T + ["--dim", str(10**6), "--samples", str(10**6), "--problem", "logistic"], str(10**6)),
    (T + ["--out", "/proc/nope"], "/proc/nope"), (T + ["--out", "{d}/file"], "file"),
    (T + ["--out", "{d}/file/sub"], "file"), (T + ["--frobnicate"], "--frobnicate"),
    # rpd train: files (--x0: .npy; table:FILE.npy; quadratic:/logistic:FILE.npz; charlm:TEXT)
    *[(T + ["--x0", "{d}/" + f], f) for f in
      ("text.npy", "empty.npy", "matrix.npy", "vec3.npy", "nan.npy", "cplx.npy", "strs.npy",
       "obj.npy", "trunc.npy", "arr.npz", "missing.npy", "")],
    *[(T + ["--rule", "table:{d}/" + f], f) for f in
      ("text.npy", "empty2d.npy", "bool.npy", "frac.npy", "neg.npy", "huge.npy", "vec3.npy",
       "nan.npy", "obj.npy", "arr.npz", "missing.npy")],
    *[(T + ["--problem", Q + f], f) for f in
      ("indef.npz", "zero.npz", "unbounded.npz", "nonsym.npz", "noB.npz", "shapes.npz",
       "emptyA.npz", "strA.npz", "boolA.npz", "nanA.npz", "text.npz", "vec3.npy", "missing.npz")],
    *[(T + ["--problem", "logistic:{d}/" + f], f) for f in
      ("noY.npz", "labels.npz", "X1d.npz", "emptyX.npz", "text.npz", "vec3.npy")],
    *[(T + ["--problem", "charlm:{d}/" + f], f) for f in
      ("empty.txt", "short.txt", "onechar.txt", "latin1.txt", "missing.txt")],
    # rpd delays
    (["delays", "--stages", "0"], "0"), (["delays", "--stages", "x"], "x"),
    (["delays", "--stages", "100000"], "100000"), (["delays", "-S", "4", "--schedule", "zz"], "zz"),
    (["delays"], "--stages"),
    # rpd schedules
    # rpd schedules --pareto (the chooser)
    (["schedules", "-P", "4", "-M", "8", "--pareto", "--memory", "act=x"], "'x'"),
    (["schedules", "-P", "4", "-M", "8", "--pareto", "--memory", "act=1,act=2"], "act"),
    (["schedules", "-P", "4", "-M", "8", "--memory", "act=4"], "--memory"),
    (["schedules", "-P", "4", "-M", "8", "--pareto", "--max-staleness", "-1"], "-1"),
    (["schedules", "-P", "4", "-M", "8", "--durations", "F=1,F=2"], "F"),
    # rpd pipeline (the SPMD executor)
    (["pipeline", "--stages", "2", "--devices", "3", "--out", "{d}/p"], "3"),
    (["pipeline", "--stages", "2", "--stash", "everything", "--out", "{d}/p"], "everything"),
    (["pipeline", "--stages", "2", "--problem", "quadratic", "--out", "{d}/p"], "quadratic"),
    (["pipeline", "--stages", "2", "--microbatches", "0", "--out", "{d}/p"], "0"),
    (["pipeline", "--stages", "2", "--lr", "nan", "--out", "{d}/p"], "nan"),
    (["pipeline", "--stages", "2", "--seed", "99999999999", "--out", "{d}/p"], "99999999999"),
    (["pipeline", "--stages", "2", "--out", "/proc/nope"], "/proc/nope"),
    (["pipeline", "--stages", "2", "--text", "{d}/onechar.txt", "--out", "{d}/p"], "onechar"),
    (["schedules", "-P", "0", "-M", "4"], "0"), (["schedules", "-P", "4", "-M", "x"], "x"),
    (["schedules", "-P", "4", "-M", "4", "--chunks", "0"], "0"),
    (["schedules", "-P", "4", "-M", "4", "--durations", "F=abc"], "abc"),
    (["schedules", "-P", "4", "-M", "4", "--durations", "F=-1"], "-1"),
    (["schedules", "-P", "4", "-M", "4", "--durations", "Z=1"], "Z=1"),
    (["schedules", "-P", "4", "-M", "4", "--durations", "F=1,F=2"], "F"),
    (["schedules", "-P", "4", "-M", "4", "--latency", "-1"], "-1"),
    (["schedules", "-P", "4", "-M", "4", "--latency", "nan"], "nan"),
    (["schedules", "-P", "4", "-M", "4", "--schedule", "zz"], "zz"),
    # sizes with a stated limit, output paths, budgets, memory models (refused at once)
    (["schedules", "-P", "300", "-M", "4"], "300"),
    (["schedules", "-P", "8", "-M", "5000"], "5000"),
    (["schedules", "-P", "64", "-M", "1024", "-V", "1"], "65536"),
    (["schedules", "-P", "4", "-M", "8", "--plot", "{d}/nowhere/x.png"], "nowhere"),
    (["schedules", "-P", "4", "-M", "8", "--plot", "{d}/file/x.png"], "file"),
    (["schedules", "-P", "4", "-M", "8", "--plot", "{d}/x.csv"], "x.csv"),
    (["schedules", "-P", "4", "-M", "8", "--pareto", "--plot", "{d}/nowhere/f.png"], "nowhere"),
    (["schedules", "-P", "4", "-M", "8", "--pareto", "--memory", "act=0.5"], "0.5"),
    (["schedules", "-P", "4", "-M", "8", "--memory-model", "zb:2"], "2"),
    (["schedules", "-P", "4", "-M", "8", "--exact", "1000"], "1000"),
    (["delays", "-S", "300"], "300"),
    (["theory", "stability", "--stages", "1000", "--no-measure"], "1000"),
    (["theory", "check", "--seeds", "100000"], "100000"),
    (["pipeline", "--stages", "2", "--microbatches", str(2**40), "--out", "{d}/p"], str(2**40)),
    # rpd reproduce (checked before any training)
    (["reproduce", "--only", "nosuch", "--out", "{d}/o1"], "nosuch"),
    (["reproduce", "--out", "/proc/nope"], "/proc/nope"),
    (["reproduce", "--out", "{d}/file"], "file"),
    *[(["reproduce", "--quick", "--out", "{d}/o2", "--text", "{d}/" + f], f) for f in
      ("empty.txt", "short.txt", "onechar.txt", "latin1.txt", "missing.txt")],
    # rpd theory
    (["theory", "--L", "nan"], "nan"), (["theory", "--L", "-1"], "-1"),
    (["theory", "--sigma2", "abc"], "abc"), (["theory", "--delta", "0"], "0"),
    (["theory", "check", "--seeds", "0"], "0"), (["theory", "prove"], "prove"),
    # top level
    (["nosuch"], "nosuch"), ([], "COMMAND"),
]
SUBPROCESS = [
    (T + ["--x0", "{d}/text.npy"], "text.npy"),
    (T + ["--problem", Q + "indef.npz"], "indef.npz"),
    (["reproduce", "--quick", "--out", "{d}/o3", "--text", "{d}/onechar.txt"], "onechar.txt"),
]


def _ids(cases):
  return [" ".join(a) or "(none)" for a, _ in cases]


def _snapshot(*roots):
  return {os.path.join(r, f) for root in roots for r, ds, fs in os.walk(root) for f in fs + ds}


def _argv(argv, d):
  return [a.replace("{d}", d) for a in argv]


@pytest.mark.parametrize("argv, needle", CASES, ids=_ids(CASES))
def test_bad_input_exits_2_with_one_line(argv, needle, bad_files, tmp_path, monkeypatch,
                                         capsys):
  monkeypatch.chdir(tmp_path)  # the default runs/ and paper_figures/ would land here
  before = _snapshot(str(tmp_path), bad_files)
  t0 = time.time()
  try:
    code = main(_argv(argv, bad_files))
  except SystemExit as e:  # argparse's own errors
    code = e.code
  elapsed = time.time() - t0
  out, err = capsys.readouterr()
  lines = err.strip().splitlines()
  assert code == 2, (code, err[-2000:])
  assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
  assert needle in lines[0], lines[0]
  assert _snapshot(str(tmp_path), bad_files) == before, "wrote files"
  assert elapsed < 10, elapsed


@pytest.mark.parametrize("argv, needle", SUBPROCESS, ids=_ids(SUBPROCESS))
def test_bad_input_in_a_subprocess(argv, needle, bad_files, tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  r = subprocess.run([sys.executable, "-m", "rpd", *_argv(argv, bad_files)], cwd=tmp_path,
                     capture_output=True, text=True, env=env, timeout=120)
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and needle in lines[0], r.stderr[-2000:]
  assert not os.listdir(tmp_path)
