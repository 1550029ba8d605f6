"""Mutation check: deliberate bugs in a copy of the package must each fail a named test.

Each mutant is a text substitution in one file of a copy of ``rpd`` (with ``theory`` and
``experiments`` placed where the install maps them, ``rpd/theory`` and
``rpd/experiments``) in a temporary directory; a fast subset of named tests runs on the copy
in a subprocess (``PYTHONPATH`` pointing at it) and must fail (pytest exit code 1: a test
failed, not a collection or import error). The unmutated copy must pass the same tests, and
the subprocess must really import the copy. Mutants run two at a time.
"""
import concurrent.futures
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

REPLAY2 = "tests/test_replay.py::test_engine_iterates_equal_the_numpy_replay[pipedream-2]"
REPLAY3 = "tests/test_replay.py::test_engine_iterates_equal_the_numpy_replay[pipedream-3]"
S1 = "tests/test_engine.py::test_delayed_gradient_descent_S1_exact"
READS = "tests/test_engine.py::test_stale_reads_match_a_direct_replay"

# (name, file, original text, mutated text, tests that must catch it)
MUTANTS = [
    ("wrong slot: the gradient of another microbatch", "rpd/rules/program_rule.py",
     "      g_rows = slots[rs, lbs]\n", "      g_rows = slots[(rs + 1) % R, lbs]\n",
     [REPLAY2, REPLAY3]),
    ("wrong slot: the stash of another microbatch", "rpd/rules/program_rule.py",
     "          slots = slots.at[rs, lbs].set(carry.x[lbs])",
     "          slots = slots.at[(rs + 1) % R, lbs].set(carry.x[lbs])", [REPLAY2, REPLAY3]),
    ("wrong delay sign", "rpd/rules/buffers.py", "(k - tau_loc)[:, None]",
     "(k + tau_loc)[:, None]", [S1, READS]),
    ("off-by-one in the read", "rpd/rules/buffers.py", "self.it[None, :] >= (k - tau_loc)",
     "self.it[None, :] > (k - tau_loc)", [S1, READS]),
    ("update applied to the wrong block", "rpd/rules/base.py",
     "    carry = ctx.apply(carry, i[None],",
     "    carry = ctx.apply(carry, ((i + 1) % self.S)[None],", [READS, REPLAY2]),
    ("grouped updates applied to the wrong blocks", "rpd/engine_context.py",
     "    lis, owned = self.own(blocks)\n", "    lis, owned = self.own((blocks + 1) % self.S)\n",
     [REPLAY3]),
    ("stale term dropped: the read is the current point", "rpd/rules/buffers.py",
     "    return jnp.where(has[:, None], self.old[t_star], x_loc)", "    return x_loc",
     [S1, READS]),
    ("stale term dropped: delay compensation", "rpd/rules/dc_asgd.py",
     "g_rows + self.lam * g_rows * g_rows * (x_rows - xhat_rows)", "g_rows",
     ["tests/test_replay.py::test_delay_compensation_equals_the_numpy_replay[2]"]),
    ("off-by-one in the versions a read missed", "rpd/rules/buffers.py",
     "    return jnp.sum(self._valid(tau_loc, k), axis=1).astype(jnp.int32)",
     "    return jnp.sum(self._valid(tau_loc, k + 1), axis=1).astype(jnp.int32)",
     ["tests/test_replay.py::test_iteration_rule_mitigations_equal_a_direct_replay"]),
    ("stale term dropped: weight prediction", "rpd/rules/predict.py",
     "xhat + h.astype(xhat.dtype)[:, None] * v", "xhat",
     ["tests/test_replay.py::test_weight_prediction_equals_the_numpy_replay[2]"]),
    ("zb-auto without its hand-made seeds", "rpd/schedules/zb_auto.py",
     "    for seed in (ZBH1(), ZBH2(), OneFOneBFlush(), GPipe()):", "    for seed in ():",
     ["tests/test_schedules_zb_auto.py::test_issue_cases"]),
    ("zb-auto's exact step: memory limit off by one", "rpd/schedules/zb_auto.py",
     "    add(coef, -np.inf, limit - 1 + 1e-9)", "    add(coef, -np.inf, limit + 1e-9)",
     ["tests/test_schedules_zb_auto.py::test_exact_step_equals_brute_force[2-dur0-0.0-1.0]"]),
    ("chimera-fd: the doubled forward lasts one forward", "rpd/schedules/chimera_fd.py",
     "[u % 2 for u in range(U)], 2 * t_f, t_b, cap=2 * P,",
     "[u % 2 for u in range(U)], t_f, t_b, cap=2 * P,",
     ["tests/test_schedules_zoo.py::test_chimera_forward_doubling_bubble[8-32]"]),
    ("dualpipe-v overlap: a pair's outputs ready before the pair ends",
     "rpd/schedules/dualpipe_v.py", "          ready[k] = s0\n", "          ready[k] = end[k]\n",
     ["tests/test_schedules_zoo.py::test_dualpipe_v_overlap_bubble_formula[4]"]),
]


def _copy(tmp: pathlib.Path) -> pathlib.Path:
  dst = tmp / "pkg"
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  shutil.copytree(ROOT / "rpd", dst / "rpd", ignore=ignore)
  shutil.copytree(ROOT / "theory", dst / "rpd" / "theory", ignore=ignore)
  shutil.copytree(ROOT / "experiments", dst / "rpd" / "experiments", ignore=ignore)
  return dst


# pytest options of the subprocesses: one process per mutant (mutants already run in
# parallel: no xdist, so the project's ``-n 2`` is dropped), and neither the xdist nor the
# hypothesis plugin loaded (the named tests use neither; about 0.8 s CPU per subprocess).
LEAN = ("-p", "no:cacheprovider", "-o", "addopts=", "-p", "no:xdist", "-p", "no:hypothesispytest")


def _pytest(pkg: pathlib.Path, tests):
  # os.environ carries RPD_CACHE_DIR (tests/conftest.py): the subprocesses share the suite's
  # persistent compilation cache, so programs the mutant does not change are loaded, not
  # compiled again.
  env = dict(os.environ, PYTHONPATH=str(pkg), JAX_PLATFORMS="cpu",
             PYTHONDONTWRITEBYTECODE="1")
  env.pop("XLA_FLAGS", None)
  # run from the copy's directory: the working directory comes first on sys.path
  return subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", *LEAN,
                         "--rootdir", str(ROOT), "-c", str(ROOT / "pyproject.toml"),
                         *[str(ROOT / t) for t in tests]],
                        cwd=pkg, env=env, capture_output=True, text=True, timeout=600)


def _mutant(tmp: pathlib.Path, name, path, old, new, tests):
  pkg = _copy(tmp)
  f = pkg / path
  text = f.read_text()
  assert text.count(old) == 1, f"{name}: the original text must occur once in {path}"
  f.write_text(text.replace(old, new))
  return _pytest(pkg, tests)


def test_mutants_are_caught(tmp_path):
  control_pkg = _copy(tmp_path / "control")
  probe = subprocess.run([sys.executable, "-c", "import rpd, rpd.theory; print(rpd.__file__, "
                          "rpd.theory.__file__)"], env=dict(os.environ, PYTHONPATH=str(
                              control_pkg)), capture_output=True, text=True, cwd=control_pkg)
  assert probe.stdout.split() and all(p.startswith(str(control_pkg))
                                      for p in probe.stdout.split()), probe
  all_tests = sorted({t for m in MUTANTS for t in m[4]})
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    control = pool.submit(_pytest, control_pkg, all_tests)
    runs = {m[0]: pool.submit(_mutant, tmp_path / f"m{i}", *m) for i, m in enumerate(MUTANTS)}
    control = control.result()
    assert control.returncode == 0, control.stdout[-3000:] + control.stderr[-2000:]
    survivors = []
    for name, fut in runs.items():
      proc = fut.result()
      if proc.returncode != 1:
        survivors.append(f"{name}: exit {proc.returncode}\n{proc.stdout[-1500:]}")
  assert not survivors, "\n\n".join(survivors)
