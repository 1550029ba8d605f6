"""A hypothesis fuzz of every subcommand's options: random values end in exit code 0, 2 or 3,
with no traceback, within seconds.

Each command has a table of its options and a strategy of values per option kind, mixing
valid values (small sizes, so a valid run stays short), edge values (0, negatives, nan, inf,
huge integers, empty strings) and junk. The commands run in-process (``rpd.cli.main``), in a
temporary working folder (so default output folders land there). ``derandomize=True`` makes
the examples the same on every run (CI sees a fixed set; a failure reproduces).

Bounded work: ``rpd train`` draws at most 8 steps and a small dimension; ``rpd pipeline`` and
``rpd reproduce`` always get one invalid value (their valid runs compile a model or train
for minutes; they are run by their own tests), and ``rpd theory check`` (minutes) is left to
``tests/test_theorem_check.py``. Budget: about 20 s of CPU for the whole file.
"""
from __future__ import annotations

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpd.cli import main

JUNK = ["", "x", "nan", "inf", "-inf", "1e400", "-0", "0x10", "1.5", " ", "--", "None"]


def ints(lo: int, hi: int):
  """Valid small integers, edge integers and junk, as text."""
  return st.one_of(st.integers(lo, hi).map(str),
                   st.sampled_from(["0", "-1", "-7", str(2**31), str(10**12), "1e3"] + JUNK))


def floats():
  return st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["0", "1", "0.5", "-1", "1e-300", "1e300"] + JUNK))


def _run(argv, tmp_path, monkeypatch, capsys, budget=30.0):
  monkeypatch.chdir(tmp_path)
  t0 = time.time()
  try:
    code = main(argv)
  except SystemExit as e:  # argparse
    code = e.code
  elapsed = time.time() - t0
  out, err = capsys.readouterr()
  if os.environ.get("RPD_FUZZ_LOG"):
    with open(os.environ["RPD_FUZZ_LOG"], "a") as f:
      f.write(f"{elapsed:.2f} {code} {argv}\n")
  assert code in (0, 2, 3), (argv, code, err[-2000:])
  assert "Traceback" not in err and "Traceback" not in out, (argv, err[-2000:])
  if code == 2:
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1, (argv, err[-2000:])
  assert elapsed < budget, (argv, elapsed)
  return code


def _opts(table):
  """A strategy of argv lists: each option of ``table`` (name -> value strategy, or ``None``
  for a flag) included or not."""
  return st.lists(st.sampled_from(sorted(table)), unique=True, max_size=len(table)).flatmap(
      lambda names: st.tuples(*[st.just([n]) if table[n] is None else
                                table[n].map(lambda v, n=n: [n, v]) for n in names])
  ).map(lambda parts: [x for p in parts for x in p])


def FUZZ(n: int):
  """Settings of every fuzz here: ``n`` examples, fixed, no deadline (timed by ``_run``)."""
  return settings(derandomize=True, deadline=None, database=None, max_examples=n,
                  suppress_health_check=list(HealthCheck))

DUR = st.lists(st.tuples(st.sampled_from(["F", "B", "W", "f", "Z", ""]),
                         st.sampled_from(["1", "2", "0", "-1", "0.5", "nan", "inf", "x", ""])),
               max_size=4).map(lambda kv: ",".join(f"{k}={v}" for k, v in kv))
MEM = st.lists(st.tuples(st.sampled_from(["act", "weights", "activations", "x"]),
                         st.sampled_from(["0.5", "1", "2", "4", "9", "0", "-1", "nan", "y"])),
               max_size=3).map(lambda kv: ",".join(f"{k}={v}" for k, v in kv))
NAMES = st.sampled_from(["gpipe", "1f1b-flush", "pipedream", "pipedream-2bw", "pipemare",
                         "interleaved-1f1b", "zb-h1", "zb-h2", "chimera", "looped-bfs",
                         "interleaved-zb", "zb-v", "dualpipe-v", "zb-auto", "nosuch", ""])


@pytest.fixture
def paths(tmp_path):
  (tmp_path / "file").write_text("x")
  return st.sampled_from([str(tmp_path / "plot.png"), str(tmp_path / "missing" / "p.png"),
                          str(tmp_path / "plot.txt"), str(tmp_path), str(tmp_path / "file" / "p.png"),
                          "/proc/nope/p.png", ""])


def test_fuzz_schedules(tmp_path, monkeypatch, capsys, paths):
  table = {"--durations": DUR, "--latency": floats(), "--schedule": NAMES, "--pareto": None,
           "--memory": MEM, "--max-staleness": floats(), "--json": None, "--plot": paths,
           "--chunks": ints(1, 3), "--exact": st.sampled_from(["0", "-1", "nan", "0.2", "61", "x"]),
           "--memory-model": st.sampled_from(["rpd", "zb", "zb:0.3", "zb:2", "zb:", "x"])}

  @FUZZ(30)
  @given(P=st.one_of(st.integers(1, 6).map(str), ints(1, 6), st.sampled_from(["257", "300"])),
         M=st.one_of(st.integers(1, 12).map(str), ints(1, 12), st.sampled_from(["5000"])),
         rest=_opts(table))
  def check(P, M, rest):
    _run(["schedules", "-P", P, "-M", M, *rest], tmp_path, monkeypatch, capsys)

  check()


def test_fuzz_delays(tmp_path, monkeypatch, capsys):
  @FUZZ(25)
  @given(S=st.one_of(st.integers(1, 8).map(str), ints(1, 8), st.sampled_from(["257", "10000"])),
         name=NAMES, json=st.booleans())
  def check(S, name, json):
    _run(["delays", "-S", S, "--schedule", name] + (["--json"] if json else []), tmp_path,
         monkeypatch, capsys)

  check()


def test_fuzz_theory(tmp_path, monkeypatch, capsys):
  table = {"--L": floats(), "--sigma2": floats(), "--delta": floats(), "--json": None,
           "--latex": None, "--rule": st.sampled_from(["rpd", "pipedream", "x"]),
           "--stages": ints(1, 4), "--problem": st.sampled_from(["isotropic", "rank1", "x"]),
           "--gamma": floats(), "--sigma": floats(), "--no-measure": None}

  @FUZZ(12)
  @given(action=st.sampled_from(["show", "stability", "nosuch"]), rest=_opts(table))
  def check(action, rest):
    if action == "stability" and "--no-measure" not in rest:
      rest = rest + ["--no-measure"]  # the measured runs: tests/test_stability.py
    _run(["theory", action, *rest], tmp_path, monkeypatch, capsys)

  check()


def test_fuzz_train(tmp_path, monkeypatch, capsys):
  table = {"--lr": floats(), "--seed": ints(0, 3), "--noise": floats(), "--dim": ints(1, 12),
           "--samples": ints(1, 64), "--optimizer": st.sampled_from(["sgd", "adam", "x"]),
           "--batch": ints(1, 16), "--record-every": ints(1, 8),
           "--rule": st.sampled_from(["rpd", "pipedream", "sync", "schedule:zb-h1",
                                      "schedule:zb-auto", "constant:2", "constant:-1", "x"]),
           "--stages": ints(1, 4), "--devices": ints(1, 4), "--json": None,
           "--problem": st.sampled_from(["quadratic", "logistic", "cubic", "logistic:nowhere"])}

  @FUZZ(8)
  @given(steps=st.one_of(st.integers(1, 8).map(str), ints(1, 8)), rest=_opts(table))
  def check(steps, rest):
    _run(["train", "--steps", steps, "--out", str(tmp_path / "run"), *rest], tmp_path,
         monkeypatch, capsys, budget=60.0)

  check()


BAD = st.sampled_from([["--stages", "0"], ["--lr", "nan"], ["--microbatches", "x"],
                       ["--seed", str(2**40)], ["--out", "/proc/nope"], ["--devices", "0"]])


def test_fuzz_pipeline_and_reproduce(tmp_path, monkeypatch, capsys):
  table = {"--lr": floats(), "--seed": ints(0, 3), "--stages": ints(1, 4),
           "--microbatches": ints(1, 8), "--records": ints(1, 4), "--batch": ints(1, 8),
           "--schedule": NAMES, "--problem": st.sampled_from(["transformer", "mlp", "x"]),
           "--optimizer": st.sampled_from(["sgd", "x"]), "--flush-every": ints(1, 4)}

  @FUZZ(15)
  @given(rest=_opts(table), bad=BAD, which=st.sampled_from(["pipeline", "reproduce"]))
  def check(rest, bad, which):
    if which == "reproduce":
      argv = ["reproduce", "--only", "nosuch" if bad[0] != "--out" else "stage_sweep",
              "--out", bad[1] if bad[0] == "--out" else str(tmp_path / "o")]
    else:
      argv = ["pipeline", "--quiet", "--out", str(tmp_path / "p"), *rest, *bad]
    assert _run(argv, tmp_path, monkeypatch, capsys) == 2

  check()
