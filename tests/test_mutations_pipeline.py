"""Mutation check of the pipeline executor: each planted bug fails a named test of
``tests/test_pipeline.py``.

A mutant is a text substitution in a copy of ``rpd/pipeline/executor.py`` (imported anew
under another name) or of ``rpd/schedules/core.py``'s 1F1B order; the named check of
``test_pipeline.py`` runs on it in this process and must report a difference above the
tolerance (or fail its assertions). The unmutated code passes the same checks there (the
named tests themselves; not rerun here, to save their compilations).
"""
import importlib.util
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import test_pipeline as tp  # noqa: E402

from rpd.pipeline import executor as executor_module  # noqa: E402
from rpd.schedules import core as core_module  # noqa: E402

# (name, original text, mutated text, (schedule, optimizer, P) the named test runs)
MUTANTS = [
    ("stashing error: the backward reads the current weights, not the stashed ones",
     'lambda: c["wst"][row[C["slot"]]]])', 'lambda: c["w"][cc]])',
     ("pipedream", "sgd", 2)),  # test_schedule_equals_reference[pipedream-sgd]
    ("misrouted ppermute: messages go to the other neighbour",
     "jax.lax.ppermute(v, AXIS, list(pairs))",
     "jax.lax.ppermute(v, AXIS, [(d, s) for s, d in pairs])",
     ("1f1b-flush", "sgd", 4)),  # test_four_devices_equal_reference[1f1b-flush]
    ("wrong flush scale: the sum of the microbatch gradients over M + 1",
     "g = (g + other) / st.M", "g = (g + other) / (st.M + 1)",
     ("1f1b-flush", "sgd", 2)),  # test_schedule_equals_reference[1f1b-flush-sgd]
    ("optimizer state advanced on a backward that applies no update",
     "opt = jax.tree.map(lambda n, o: jnp.where(upd, n, o), opt, _index(c[\"opt\"], cc))",
     "opt = opt", ("pipedream-2bw", "momentum", 2)),
    # test_schedule_equals_reference[pipedream-2bw-momentum]
]


def _load(path: pathlib.Path, old: str, new: str, tmp_path, name: str):
  src = path.read_text()
  assert src.count(old) == 1, old
  out = tmp_path / f"{name}.py"
  out.write_text(src.replace(old, new))
  spec = importlib.util.spec_from_file_location(name, out)
  mod = importlib.util.module_from_spec(spec)
  sys.modules[name] = mod
  spec.loader.exec_module(mod)
  return mod


@pytest.mark.parametrize("what, old, new, case", MUTANTS, ids=[m[0][:30] for m in MUTANTS])
def test_executor_mutant_fails_named_test(what, old, new, case, tmp_path):
  name, opt, P = case
  mutant = _load(pathlib.Path(executor_module.__file__), old, new, tmp_path,
                 f"rpd_executor_mutant_{abs(hash(what))}")
  try:
    diff = tp.check_schedule(name, opt, P=P, executor=mutant.execute)
  except AssertionError:
    return  # caught by the check's own assertions
  assert diff > 1e-6, f"mutant '{what}' not caught: difference {diff:.3g}"


def test_extra_warmup_forward_in_1f1b_fails_named_test(tmp_path, monkeypatch):
  """Schedule-level bug: one extra warm-up forward in a copy of core.py's 1F1B order. The
  reference does not read the action lists, so PipeDream no longer equals it
  (test_schedule_equals_reference[pipedream-sgd])."""
  mutant = _load(pathlib.Path(core_module.__file__), "    w = min(P - 1 - p, M)\n",
                 "    w = min(P - p, M)\n", tmp_path, "rpd_core_mutant")
  import rpd.schedules.pipedream as pd
  monkeypatch.setattr(pd, "one_f_one_b_actions", mutant.one_f_one_b_actions)
  plan = tp.build_plan("pipedream", 2, tp.M, batches=tp.NB)
  try:
    diff = tp.check_schedule("pipedream", "sgd", plan=plan)
  except AssertionError:
    return
  assert diff > 1e-6, f"extra warm-up forward not caught: difference {diff:.3g}"
