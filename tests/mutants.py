"""Mutation testing helpers shared by the ``test_mutations*.py`` files (not a test module).

A mutant is ``(name, path, old, new, tests)``: the text ``old`` (which must occur exactly once
in ``path`` of a copy of the package) is replaced by ``new``; the named ``tests`` then run on
the copy in a subprocess (``PYTHONPATH`` pointing at it) and must fail (pytest exit code 1),
while the unmutated copy must pass them. Mutants run two at a time.
"""
from __future__ import annotations

import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]

# pytest options of the subprocesses: one process per mutant (mutants already run in
# parallel: no xdist, so the project's ``-n 2`` is dropped), and neither the xdist nor the
# hypothesis plugin loaded (the named tests use neither; about 0.8 s CPU per subprocess).
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


def run_named(pkg: pathlib.Path, tests, extra: tuple[str, ...] = ()):
  """Run the named ``tests`` (node ids relative to the repository) against the copy ``pkg``.

  ``os.environ`` carries ``RPD_CACHE_DIR`` (tests/conftest.py): the subprocesses share the
  suite's persistent compilation cache, so programs a mutant does not change are loaded, not
  compiled again. Runs from the copy's folder (the working directory comes first on sys.path).
  """
  env = dict(os.environ, PYTHONPATH=str(pkg), JAX_PLATFORMS="cpu",
             PYTHONDONTWRITEBYTECODE="1")
  env.pop("XLA_FLAGS", None)
  return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", *LEAN, *extra,
                         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                         *[str(ROOT / t) for t in tests]],
                        cwd=pkg, env=env, capture_output=True, text=True, timeout=600)


def run_mutant(tmp: pathlib.Path, name, path, old, new, tests, *, skip=(), extra=(),
               where=lambda p: p):
  """Copy the package, apply one mutant (``where`` maps ``path`` into the copy), run ``tests``."""
  pkg = copy_package(tmp, skip)
  f = pkg / where(path)
  text = f.read_text()
  assert text.count(old) == 1, f"{name}: the original text must occur once in {path}"
  f.write_text(text.replace(old, new))
  return run_named(pkg, tests, extra)


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
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    control = pool.submit(run_named, control_pkg, all_tests, extra)
    runs = {m[0]: pool.submit(run_mutant, tmp_path / f"m{i}", *m, skip=skip, extra=extra,
                              where=where) for i, m in enumerate(mutants)}
    control = control.result()
    assert control.returncode == 0, control.stdout[-3000:] + control.stderr[-2000:]
    survivors = []
    for name, fut in runs.items():
      proc = fut.result()
      if proc.returncode != 1:
        survivors.append(f"{name}: exit {proc.returncode}\n{proc.stdout[-1500:]}")
  assert not survivors, "\n\n".join(survivors)
