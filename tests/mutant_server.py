"""Run pytest on package copies from one process: ``python tests/mutant_server.py < jobs.json``.

Used by :mod:`mutants` (not a test module). Every mutant and the control run the same kind
of job: named tests against one copy of the package. Started once per batch, this process
imports NumPy, SciPy, SymPy, JAX, Flax, optax and pytest (about 2 s of CPU that a fresh ``python -m pytest`` per job
pays again) and then forks one child per job, at most ``parallel`` at a time. A child puts
its copy first on ``sys.path`` (and ``PYTHONPATH``, for the commands its tests start),
checks that ``rpd`` really comes from the copy, and runs ``pytest.main`` on the named tests
with its output in a file. JAX is imported here but never initialised (no backend, no
compiled program, no thread pool), so every child starts as a fresh process would, and
nothing of one job reaches another: each child is its own process.

stdin: ``{"parallel": 2, "args": [...], "jobs": [{"pkg": ..., "tests": [...], "extra": [...],
"out": ...}, ...]}``; stdout: one JSON list of exit codes (pytest's, or 3 when the copy was
not the ``rpd`` imported).
"""
from __future__ import annotations

import json
import os
import sys

import numpy  # noqa: F401  (the third-party libraries the package imports: once, before
import scipy.linalg  # noqa: F401  the forks)
import sympy  # noqa: F401
import jax  # noqa: F401
import jax.numpy  # noqa: F401
import flax.struct  # noqa: F401
import optax  # noqa: F401
import pytest
from jax._src import xla_bridge

# Forking is safe only while JAX has no backend (no XLA thread pools; JAX warns at fork once
# one exists): none of the imports above may have started one.
assert not getattr(xla_bridge, "_backends", None), "a JAX backend exists before the forks"


def _child(job: dict, args: list[str]) -> int:
  fd = os.open(job["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  pkg = job["pkg"]
  os.chdir(pkg)
  sys.path.insert(0, pkg)
  os.environ["PYTHONPATH"] = pkg
  import rpd  # noqa: PLC0415  (from the copy: checked below)
  if not rpd.__file__.startswith(pkg):
    print(f"rpd imported from {rpd.__file__}, not from the copy {pkg}")
    return 3
  return int(pytest.main([*args, *job["extra"], *job["tests"]]))


def main() -> int:
  req = json.load(sys.stdin)
  jobs, args, parallel = req["jobs"], req["args"], req["parallel"]
  codes: list[int | None] = [None] * len(jobs)
  running: dict[int, int] = {}
  nxt = 0
  while nxt < len(jobs) or running:
    while nxt < len(jobs) and len(running) < parallel:
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:  # the child never returns from here
        code = 1
        try:
          code = _child(jobs[nxt], args)
        finally:
          sys.stdout.flush()
          sys.stderr.flush()
          os._exit(code)
      running[pid] = nxt
      nxt += 1
    pid, status = os.wait()
    codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
  json.dump(codes, sys.stdout)
  return 0


if __name__ == "__main__":
  sys.exit(main())
