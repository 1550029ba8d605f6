"""Test configuration: 8 forced host devices, float64 and fast-compile XLA:CPU code generation,
set before JAX is imported."""
import os
import platform

# How XLA:CPU generates machine code for the suite (x86-64): its loop emitters instead of the
# MLIR fusion emitters, LLVM at -O0, and no FMA (instruction set up to AVX). The programs (the
# HLO) are the same; what changes is their machine code: slower to run, about 3 times faster
# to compile (BENCHMARKS.md, "Session 6: the suite compiles with fast code generation"), and
# most of the suite's time is compiling small programs. Without FMA, every program rounds each
# product and each sum, so the tests that compare two programs bit for bit hold here as they
# do with XLA's defaults (the loop emitters at -O0 *with* FMA fail 16 of them, by about 1e-15
# relative: those loops skip the contraction that XLA's precompiled kernels do). The results
# compared with committed numbers (test_paper_figures.py) come from a fresh process with the
# command line's settings, not these. RPD_TEST_XLA_DEFAULTS=1 runs the suite with XLA's
# default code generation (what a user's run compiles); it passes too (BENCHMARKS.md).
# The last flag compiles each program as one LLVM module instead of several compiled on
# parallel threads: the same machine code, 8-25% less compile CPU at -O0, and the suite's two
# workers already keep both cores busy (BENCHMARKS.md, session 14).
SUITE_XLA_FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=0",
                   "--xla_cpu_max_isa=AVX", "--xla_cpu_parallel_codegen_split_count=1")
_fast = (os.environ.get("RPD_TEST_XLA_DEFAULTS", "") in ("", "0")
         and platform.machine().lower() in ("x86_64", "amd64"))
os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_force_host_platform_device_count=8",
     *(SUITE_XLA_FLAGS if _fast else ())]).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (must come after XLA_FLAGS)

jax.config.update("jax_enable_x64", True)

from rpd import cache as _cache  # noqa: E402

# The persistent compilation cache (rpd.cache): the user's folder where it exists (rpd creates
# it on its first run), else a folder of the test suite in the temporary directory (never the
# user's: the suite does not create it). Both pytest-xdist workers and the commands the tests
# run share it, and a program compiled by one test module is loaded, not compiled again, after
# the per-module jax.clear_caches() below. Never required: without a writable folder the
# suite runs without it (RPD_NO_CACHE).
_dir = _cache.cache_dir()
if not os.path.isdir(_dir):
  import tempfile
  _dir = os.path.join(tempfile.gettempdir(), f"rpd-test-jax-cache-{os.getuid()}")
if _cache.enable(_dir) is None:
  os.environ[_cache.ENV_OFF] = "1"
else:
  os.environ[_cache.ENV_DIR] = _dir


import pytest  # noqa: E402
from hypothesis import settings as _hypothesis_settings  # noqa: E402

# Property tests draw the same examples on every run (a failure found once is found again, and
# a passing suite cannot turn red by chance): derandomized, no example database, no deadline
# (a deadline is a timing limit; the tests' own @settings fix max_examples).
_hypothesis_settings.register_profile("rpd", derandomize=True, database=None, deadline=None)
_hypothesis_settings.load_profile("rpd")

# benchmarks/profile_suite.py: with RPD_COMPILE_PROFILE=<folder>, every pytest process of the
# run that loads this file (the xdist workers, the mutants' runs without --noconftest) records
# the seconds and number of JAX's compile events per test module and per compiled function,
# written to <folder>/<pid>.json when its session ends. Off by default (no listener is registered).
_PROFILE = os.environ.get("RPD_COMPILE_PROFILE")
_profile: dict = {}
if _PROFILE:
  import jax.monitoring  # noqa: E402

  def _on_duration(event, secs, fun_name=None, **_):
    if not event.startswith("/jax/core/compile/"):
      return
    test = os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").split("::")[0]
    kind = event.rsplit("/", 1)[-1].replace("_duration", "")
    for key in ((test, kind), ("fun", kind, str(fun_name)) if fun_name else None):
      if key:
        n, t = _profile.get("|".join(key), (0, 0.0))
        _profile["|".join(key)] = (n + 1, t + secs)

  jax.monitoring.register_event_duration_secs_listener(_on_duration)


def pytest_unconfigure(config):
  if _PROFILE:
    import json
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.path.join(_PROFILE, f"{os.getpid()}.json"), "w") as f:
      json.dump({"cpu": r.ru_utime + r.ru_stime, "events": _profile}, f)


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
  """Drop JAX's compiled programs after each test module: one process compiles thousands of
  programs over the suite, and keeping them all made XLA's compiler crash late in the run."""
  yield
  jax.clear_caches()


# Modules whose tests share work done once per process: module-scoped fixtures, lru_cache'd
# problems and the compiled programs of one module (kept until the module ends, see above),
# sympy derivations cached by rpd.theory (scaling.orders: ~25 s of CPU for the three
# variants). With `--dist loadgroup` (pyproject.toml's addopts) each runs whole on one xdist
# worker, so that work is done once, not once per worker; every other test is handed out one
# by one, as with `--dist load`.
SHARED_WORK = ("test_charlm.py", "test_pipeline.py", "test_problems_common.py",
               "test_rules_common.py", "test_schedules_readme.py", "test_schedules_zb_auto.py")


# The theory's modules (shared work too, listed only here) run as one unit, on one worker:
# they share rpd.theory's cached sympy derivations and PipeDream programs (S = 1..64) across
# modules (122 s of CPU in one process, 160 s in one process per module after the start-up is
# taken out: 2026-12-03, the Intel Xeon machine).
THEORY = ("test_coupled.py", "test_cyclic.py", "test_delay_theory.py", "test_first_order.py",
          "test_lemma_adversarial.py", "test_smooth.py", "test_stability.py",
          "test_stability_exact.py", "test_theorem.py", "test_theorem_check.py",
          "test_tightness.py", "test_theory_lemma_cli.py")
THEORY_UNIT = "tests/(theory modules)"

# Tests that run for 15-60 s each (mutants, ``rpd reproduce`` and other commands in
# subprocesses): handed out right after the shared-work units and before the many short tests,
# so that no worker starts a long test while the other has nothing left to do.
LONG = ("test_mutations.py", "test_mutations_coupled.py", "test_mutations_pipeline.py",
        "test_mutations_rules.py", "test_mutations_theory.py", "test_reproduce_resume.py",
        "test_pipeline_cli.py", "test_paper_figures.py", "test_pipeline_multiprocess.py",
        "test_cache.py", "test_rules_registry.py")


def shared_work_scope(nodeid: str) -> str:
  """The unit of work one xdist worker runs whole: all the theory modules together, the module
  of another SHARED_WORK test, else the test itself. (``xdist_group`` marks no longer do
  this: pytest-xdist 3.8 groups by a suffix it writes to ``item._nodeid``, which pytest 9.2 no
  longer reads, so with pytest 9.2 every marked module was split between the workers and its
  shared work done twice.)"""
  path = nodeid.split("::", 1)[0]
  base = os.path.basename(path)
  if base in THEORY:
    return THEORY_UNIT
  return path if base in SHARED_WORK else nodeid


def _rank(nodeid: str) -> int:
  base = os.path.basename(nodeid.split("::", 1)[0])
  return 0 if base in THEORY else 1 if base in SHARED_WORK else 2 if base in LONG else 3


def pytest_collection_modifyitems(config, items):
  """Longest work first (the scheduler below hands units out in this order): the theory unit,
  the other shared-work modules, the long tests, then the rest, each in collection order."""
  items.sort(key=lambda item: _rank(item.nodeid))


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config, log):
  if config.getvalue("dist") != "loadgroup":
    return None  # another --dist mode asked for on the command line: pytest-xdist's own
  from xdist.scheduler import LoadScopeScheduling

  config.option.loadscopereorder = False  # keep the order of pytest_collection_modifyitems

  class SharedWorkScheduling(LoadScopeScheduling):
    def _split_scope(self, nodeid: str) -> str:
      return shared_work_scope(nodeid)

  return SharedWorkScheduling(config, log)


# A run that split a SHARED_WORK module between workers (the scheduler above not in effect)
# fails: that would do the module's shared work twice without any test noticing.
_workers_of: dict[str, set] = {}


def pytest_runtest_logreport(report):
  node = getattr(report, "node", None)  # on pytest-xdist's controller: the worker that ran it
  scope = shared_work_scope(report.nodeid)
  if node is not None and report.when == "setup" and scope != report.nodeid:
    _workers_of.setdefault(scope, set()).add(node.gateway.id)


def pytest_sessionfinish(session, exitstatus):
  split = sorted(p for p, w in _workers_of.items() if len(w) > 1)
  if split and exitstatus == pytest.ExitCode.OK and session.config.getvalue("dist") == "loadgroup":
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if tr is not None:
      tr.write_line(f"\nERROR: SHARED_WORK modules split between xdist workers: {', '.join(split)}"
                    " (tests/conftest.py, pytest_xdist_make_scheduler)", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
