"""Mutation testing helpers shared by the ``test_mutations*.py`` files (not a test module).

A mutant is ``(name, path, old, new, tests)``: the text ``old`` (which must occur exactly once
in ``path`` of a copy of the package) is replaced by ``new``; the named ``tests`` then run on
the copy in a process of their own (the copy first on ``sys.path``) and must fail (pytest
exit code 1), while the unmutated copy must pass them. Mutants run two at a time, forked by
one ``tests/mutant_server.py`` process per batch.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]

# pytest options of the runs: one process per mutant (mutants already run in parallel: no
# xdist, so the project's ``-n 2`` is dropped), and neither the xdist nor the
# hypothesis plugin loaded (the named tests use neither; about 0.8 s CPU per run).
LEAN = ("-p", "no:cacheprovider", "-o", "addopts=", "-p", "no:xdist", "-p", "no:hypothesispytest")


def copy_package(tmp: pathlib.Path, skip: tuple[str, ...] = ()) -> pathlib.Path:
  """Copy ``rpd``, ``theory`` and ``experiments`` as installed (``rpd.theory``, ...) to ``tmp/pkg``.

  Args:
    tmp: the folder to copy into.
    skip: extra file name patterns left out (e.g. generated caches a mutant must not reuse).

  Returns:
    the folder to put on ``PYTHONPATH``.
  """
  dst = tmp / "pkg"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc", *skip)
  shutil.copytree(ROOT / "rpd", dst / "rpd", ignore=ignore)
  shutil.copytree(ROOT / "theory", dst / "rpd" / "theory", ignore=ignore)
  shutil.copytree(ROOT / "experiments", dst / "rpd" / "experiments", ignore=ignore)
  return dst


def _env() -> dict:
  env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONDONTWRITEBYTECODE="1")
  env.pop("XLA_FLAGS", None)
  env.pop("PYTHONPATH", None)
  return env


def run_many(runs, parallel: int = 2) -> list[subprocess.CompletedProcess]:
  """Run each ``(pkg, tests, extra)`` of ``runs``: the named ``tests`` (node ids relative to
  the repository) against the copy ``pkg``, ``parallel`` at a time.

  One ``tests/mutant_server.py`` process runs them all (each in a process of its own, forked
  after the third-party libraries are imported once). ``os.environ`` carries ``RPD_CACHE_DIR``
  (tests/conftest.py): the runs share the suite's persistent compilation cache, so programs
  a mutant does not change are loaded, not compiled again. Each runs in its copy's folder.

  Returns:
    per run, its exit code and output (``stdout``; ``stderr`` is empty).
  """
  tmp = pathlib.Path(tempfile.mkdtemp(prefix="rpd-mutants-"))
  try:
    jobs = [{"pkg": str(pkg), "tests": [str(ROOT / t) for t in tests], "extra": list(extra),
             "out": str(tmp / f"{i}.txt")} for i, (pkg, tests, extra) in enumerate(runs)]
    args = ["-x", "-q", *LEAN, "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml")]
    server = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "mutant_server.py")], env=_env(),
        input=json.dumps({"parallel": parallel, "args": args, "jobs": jobs}),
        capture_output=True, text=True, timeout=900)
    assert server.returncode == 0, server.stdout[-2000:] + server.stderr[-3000:]
    codes = json.loads(server.stdout.strip().splitlines()[-1])
    return [subprocess.CompletedProcess(job["tests"], code, pathlib.Path(job["out"]).read_text(),
                                        "") for job, code in zip(jobs, codes)]
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def mutated_copy(tmp: pathlib.Path, name, path, old, new, *, skip=(),
                 where=lambda p: p) -> pathlib.Path:
  """Copy the package and apply one mutant (``where`` maps ``path`` into the copy)."""
  pkg = copy_package(tmp, skip)
  f = pkg / where(path)
  text = f.read_text()
  assert text.count(old) == 1, f"{name}: the original text must occur once in {path}"
  f.write_text(text.replace(old, new))
  return pkg


def assert_mutants_caught(tmp_path: pathlib.Path, mutants, *, skip=(), extra=(),
                          where=lambda p: p, probe=None) -> None:
  """The unmutated copy passes every named test, and every mutant fails its own (exit 1).

  Args:
    probe: optional ``probe(control_pkg)``, called before the runs, that asserts the
      subprocesses really import the copy.
  """
  control_pkg = copy_package(tmp_path / "control", skip)
  if probe is not None:
    probe(control_pkg)
  all_tests = sorted({t for m in mutants for t in m[4]})
  runs = [(control_pkg, all_tests, extra)]
  for i, (name, path, old, new, tests) in enumerate(mutants):
    runs.append((mutated_copy(tmp_path / f"m{i}", name, path, old, new, skip=skip,
                              where=where), tests, extra))
  control, *procs = run_many(runs)
  assert control.returncode == 0, control.stdout[-5000:]
  survivors = [f"{m[0]}: exit {p.returncode}\n{p.stdout[-1500:]}"
               for m, p in zip(mutants, procs) if p.returncode != 1]
  assert not survivors, "\n\n".join(survivors)
