"""The pipeline executor against the staleness engine, the simulator, and a planted bug.

Equality: with the same layered model, x0, key and step size, the executor's parameters equal
``rpd.engine.run`` with rule ``pipedream`` (PipeDream schedule, through the exact
correspondence of :mod:`rpd.pipeline.equivalence`) and with rule ``sync`` (GPipe and
1F1B-flush), for S in {2, 4, 8} on the 8 forced host devices of conftest.py.
"""
import functools
import importlib.util
import pathlib
import sys

import jax
import numpy as np
import pytest

from rpd.engine import run as engine_run
from rpd.pipeline import build_plan, engine_window, execute
from rpd.pipeline import executor as executor_module
from rpd.problems.mlp import make_mlp
from rpd.rules import get_rule
from rpd.schedules import get_schedule
from rpd.schedules.metrics import schedule_metrics

GAMMA = 0.5
M_FLUSH = 4  # microbatches per batch of the flushing schedules
RTOL, ATOL = 1e-5, 1e-6  # float32 tolerance (the tests run in float64)


@functools.lru_cache(maxsize=None)
def _problem(S: int, flush: bool):
  # One layer per stage; a batch of M_FLUSH microbatches of 2 for the flushing schedules.
  p = make_mlp(S, n_layers=max(S, 4), hidden=8, batch=2 * M_FLUSH if flush else 3)
  return p, np.asarray(p.init(jax.random.key(7)))


@functools.lru_cache(maxsize=None)
def _engine(S: int, rule: str, K: int):
  p, x0 = _problem(S, rule == "sync")
  res = engine_run(p, get_rule(rule, S), gamma=GAMMA, K=K, key=jax.random.key(1), x0=x0,
                   record_every=K)
  assert not res.diverged
  return res.x_SxD


def _pipedream(S: int, executor=execute):
  p, x0 = _problem(S, False)
  rule = get_rule("pipedream", S)
  K = 3 * S * rule.updates_per_step  # 3 S microbatches' worth of block updates
  m0, M, apply = engine_window(rule, K)
  plan = build_plan("pipedream", S, M, apply=apply, sample_offset=-m0)
  res = executor(p, plan, gamma=GAMMA, key=jax.random.key(1), x0=x0)
  return res, _engine(S, "pipedream", K), x0


@pytest.mark.parametrize("S", [2, 4, 8])
def test_pipedream_equals_engine(S):
  res, x_eng, x0 = _pipedream(S)
  assert np.abs(x_eng - x0).max() > 1e-2  # the run moved the parameters
  np.testing.assert_allclose(res.x_SxD, x_eng, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("schedule", ["gpipe", "1f1b-flush"])
@pytest.mark.parametrize("S", [2, 4, 8])
def test_flush_equals_engine_sync(S, schedule):
  p, x0 = _problem(S, True)
  batches = 3
  plan = build_plan(schedule, S, M_FLUSH, batches=batches)
  res = execute(p, plan, gamma=GAMMA, key=jax.random.key(1), x0=x0)
  x_eng = _engine(S, "sync", batches * S)
  assert np.abs(x_eng - x0).max() > 1e-2
  np.testing.assert_allclose(res.x_SxD, x_eng, rtol=RTOL, atol=ATOL)
  assert len(res.losses) == batches * M_FLUSH


def _mutated_executor(tmp_path, old: str, new: str):
  """A copy of rpd/pipeline/executor.py with ``old`` replaced by ``new``, imported anew."""
  src = pathlib.Path(executor_module.__file__).read_text()
  assert src.count(old) == 1, old
  path = tmp_path / "executor_mutant.py"
  path.write_text(src.replace(old, new))
  spec = importlib.util.spec_from_file_location("rpd_executor_mutant", path)
  mod = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = mod
  spec.loader.exec_module(mod)
  return mod


def test_backward_with_current_weights_breaks_equality(tmp_path):
  """Planted bug: the backward uses the current instead of the stashed weights."""
  mutant = _mutated_executor(tmp_path, 'w_used = c["wst"][slot]', 'w_used = c["w"]')
  res, x_eng, _ = _pipedream(4, mutant.execute)
  assert not np.allclose(res.x_SxD, x_eng, rtol=RTOL, atol=ATOL)
  assert np.abs(res.x_SxD - x_eng).max() > 1e-4


def test_peak_stash_equals_simulator():
  """Measured peak stash use per stage = the simulator's peak activations per stage."""
  p, x0 = _problem(4, False)
  plan = build_plan("pipedream", 4, 10)
  res = execute(p, plan, gamma=GAMMA, key=jax.random.key(0), x0=x0)
  sim = schedule_metrics(get_schedule("pipedream"), 4, 10)
  assert list(res.peak_stash) == sim["peak_activations_per_stage"] == [4, 3, 2, 1]
  assert list(res.loss_m) == list(range(10))  # every microbatch reached the loss, in order
  for name in ("gpipe", "1f1b-flush"):
    plan = build_plan(name, 4, 6)
    sim = schedule_metrics(get_schedule(name), 4, 6)
    assert list(plan.peak_stash) == sim["peak_activations_per_stage"]
    assert plan.T == get_schedule(name).timed(4, 6).makespan  # one tick per unit (F = B = 1)


def test_engine_window_maps_pipedream_start():
  """The window applies K updates, S per microbatch in steady state, none twice."""
  rule = get_rule("pipedream", 4)
  K = 8 * rule.updates_per_step
  m0, M, apply = engine_window(rule, K)
  assert apply.sum() == K and m0 >= 1  # S = 4 starts with a microbatch in flight
  assert apply[m0 + 1:M - 4].all()  # microbatches fully inside the window: every block


def test_plan_rejects_unsupported():
  with pytest.raises(ValueError, match="zb-h1"):
    build_plan("zb-h1", 4, 8)
  with pytest.raises(ValueError, match="apply"):
    build_plan("gpipe", 2, 4, apply=np.ones((4, 2), bool))


def test_transformer_pipedream_equals_engine():
  """The same equality on the transformer LM (3-D activations, causal attention), S = 2."""
  from rpd.problems.transformer import make_transformer
  S = 2
  p = make_transformer(S, n_chars=4000, T=8, d_model=8, heads=2, batch=2, n_eval=4)
  x0 = np.asarray(jax.jit(p.init)(jax.random.key(0)))
  rule = get_rule("pipedream", S)
  K = 4 * S
  m0, M, apply = engine_window(rule, K)
  plan = build_plan("pipedream", S, M, apply=apply, sample_offset=-m0)
  res = execute(p, plan, gamma=1.0, key=jax.random.key(2), x0=x0)
  eng = engine_run(p, rule, gamma=1.0, K=K, key=jax.random.key(2), x0=x0, record_every=K)
  assert np.abs(eng.x_SxD - x0).max() > 1e-3
  np.testing.assert_allclose(res.x_SxD, eng.x_SxD, rtol=RTOL, atol=ATOL)
