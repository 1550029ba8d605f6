"""Mutation check: deliberate bugs in a copy of the package must each fail a named test.

Each mutant is a text substitution in one file of a copy of ``rpd`` (with ``theory`` and
``experiments`` placed where the install maps them, ``rpd/theory`` and
``rpd/experiments``) in a temporary directory; a fast subset of named tests runs on the copy
in a subprocess (``PYTHONPATH`` pointing at it) and must fail (pytest exit code 1: a test
failed, not a collection or import error). The unmutated copy must pass the same tests, and
the subprocess must really import the copy. Mutants run two at a time.
"""
import os
import subprocess
import sys

import pytest

from mutants import assert_mutants_caught

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
]

# The schedule mutants' tests use no JAX: their subprocesses skip tests/conftest.py (which
# imports JAX and sets up its compilation cache), about 1.5 s of CPU each.
SCHEDULE_MUTANTS = [
    ("timing pass: the latency added within a device, not across devices",
     "rpd/schedules/core.py", "          if latency and device_of[d] != p:",
     "          if latency and device_of[d] == p:",
     ["tests/test_schedules.py::test_timing_invariants[1f1b-flush]"]),
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


def _imports_the_copy(pkg):
  probe = subprocess.run([sys.executable, "-c", "import rpd, rpd.theory; print(rpd.__file__, "
                          "rpd.theory.__file__)"], env=dict(os.environ, PYTHONPATH=str(pkg)),
                         capture_output=True, text=True, cwd=pkg)
  assert probe.stdout.split() and all(p.startswith(str(pkg))
                                      for p in probe.stdout.split()), probe


def test_mutants_are_caught(tmp_path):
  assert_mutants_caught(tmp_path, MUTANTS, probe=_imports_the_copy)


def test_schedule_mutants_are_caught(tmp_path):
  assert_mutants_caught(tmp_path, SCHEDULE_MUTANTS, extra=("--noconftest",),
                        probe=_imports_the_copy)
