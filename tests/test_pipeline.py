"""Every schedule executed device by device equals an independent reference.

The executor (:mod:`rpd.pipeline`) runs the action lists the simulator times; the references
(``tests/ref_pipeline_numpy.py``) are written from the update semantics only (plain
minibatch training for the synchronous schedules, the PipeDream / PipeMare / 2BW read and
update rules for the others) and share no code with the plan or the executor. float64,
tolerance 1e-12, SGD, momentum and Adam.

Adam runs with ``eps = 1e-4``: with optax's default ``1e-8`` the float64 roundoff of a
gradient coordinate that cancels to ~1e-13 is divided by ``eps`` and the differences reach
1.8e-10 (measured; both sides compute the same gradient in a different operation order).

One compiled program serves every schedule of the same shapes (plans padded together,
semantics passed as data), so the zoo costs one compilation per problem and optimizer.
"""
import functools
import sys
import pathlib

import jax
import numpy as np
import optax
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import ref_pipeline_numpy as ref  # noqa: E402

from rpd.pipeline import SUPPORTED, build_plan, execute, pad_together  # noqa: E402
from rpd.problems.mlp import make_mlp  # noqa: E402
from rpd.schedules import get_schedule  # noqa: E402
from rpd.schedules.metrics import peak_activations  # noqa: E402

M, NB = 4, 3  # microbatches per batch, batches
TOL = 1e-12
ADAM_EPS = 1e-4
OPTS = {"sgd": "sgd", "momentum": "momentum", "adam": optax.scale_by_adam(eps=ADAM_EPS)}
REF_OPTS = {"sgd": "sgd", "momentum": "momentum", "adam": ("adam", ADAM_EPS)}
GAMMA = {"sgd": 0.5, "momentum": 0.2, "adam": 0.05}
KEY = jax.random.key(1)


def blocks_of(name: str) -> int:
  """Model blocks at P = 2 devices: 4 for the chunked schedules (V = 2), else 2."""
  return 4 if get_schedule(name).chunked else 2


@functools.lru_cache(maxsize=None)
def problem(S: int):
  p = make_mlp(S, n_layers=4, hidden=8, batch=2 * M)
  return p, np.asarray(p.init(jax.random.key(7)))


@functools.lru_cache(maxsize=None)
def plans(P: int, S: int, names: tuple) -> dict:
  """The plans of ``names`` padded together (one compiled program for all)."""
  return {p.schedule: p for p in pad_together(
      [build_plan(n, P, M, V=S // P, batches=NB) for n in names])}


def group(P: int, S: int) -> tuple:
  return tuple(n for n in SUPPORTED if (blocks_of(n) if P == 2 else P) == S
               and (P == 2 or not get_schedule(n).chunked))


def reference(name: str, S: int, opt: str) -> np.ndarray:
  p, x0 = problem(S)
  sem = get_schedule(name).semantics
  args = (p, x0, KEY, GAMMA[opt], REF_OPTS[opt], M)
  if sem.synchronous:
    return _sync_ref(S, opt)
  if sem.double_buffered:
    return ref.two_bw_reference(*args, NB)
  if sem.stashes:
    return ref.pipedream_reference(*args, NB)
  return ref.pipemare_reference(*args, NB)


@functools.lru_cache(maxsize=None)
def _sync_ref(S, opt):
  p, x0 = problem(S)
  return ref.sync_reference(p, x0, KEY, GAMMA[opt], REF_OPTS[opt], M, NB)


def simulator_peak(name: str, P: int, V: int) -> list:
  """The simulator's peak held activations per device, on the executor's clock (unit times)."""
  sched = get_schedule(name)
  n = M if sched.semantics.synchronous else M * NB
  return peak_activations(sched.timed(P, n, V))


def check_schedule(name: str, opt: str, P: int = 2, executor=execute, plan=None) -> float:
  """Run ``name`` and return its largest difference from the reference (asserting the rest)."""
  S = blocks_of(name) if P == 2 else P
  p, x0 = problem(S)
  plan = plan or plans(P, S, group(P, S))[name]
  res = executor(p, plan, gamma=GAMMA[opt], key=KEY, optimizer=OPTS[opt], x0=x0)
  x_ref = reference(name, S, opt)
  assert np.abs(x_ref - x0).max() > 0.05  # the run moved the parameters
  assert sorted(res.loss_m) == list(range(M * NB))  # every microbatch reached the loss
  assert list(res.peak_stash) == list(plan.peak_stash) == simulator_peak(name, P, S // P)
  return float(np.abs(res.x_SxD - x_ref).max())


CASES = [(n, o) for n in SUPPORTED for o in ("sgd", "momentum", "adam")
         if o == "sgd" or not get_schedule(n).chunked]


@pytest.mark.parametrize("name, opt", CASES)
def test_schedule_equals_reference(name, opt):
  """Every schedule, P = 2 devices (V = 2 chunks for the chunked ones): equal to 1e-12.

  Momentum and Adam run on every semantics (synchronous, PipeDream, PipeMare, 2BW, Chimera);
  the chunked schedules (synchronous, the same update path) with SGD only, to keep the
  compilations few."""
  assert check_schedule(name, opt) <= TOL


@pytest.mark.parametrize("name", ["1f1b-flush", "pipedream", "pipemare", "zb-h2", "chimera"])
def test_four_devices_equal_reference(name):
  """P = 4 devices (a message that goes the wrong way cannot hide behind P = 2)."""
  assert check_schedule(name, "sgd", P=4) <= TOL


def test_x0_is_not_consumed():
  """``execute(x0=<jax array>)`` leaves the caller's array alive (S = 1 included)."""
  p = make_mlp(1, n_layers=2, hidden=4, batch=2)
  x0 = jax.numpy.asarray(p.init(jax.random.key(0)))
  before = np.asarray(x0).copy()
  execute(p, build_plan("gpipe", 1, 1, batches=2), gamma=0.1, key=KEY, x0=x0)
  np.testing.assert_array_equal(np.asarray(x0), before)


def test_plan_peaks_equal_simulator_at_four_devices():
  """Static peak stash of every schedule's plan = the simulator's, P = 4 (no execution)."""
  for name in SUPPORTED:
    V = 2 if get_schedule(name).chunked else 1
    plan = build_plan(name, 4, 8, V=V, batches=2)
    n = 8 if plan.semantics.synchronous else 16
    assert list(plan.peak_stash) == peak_activations(get_schedule(name).timed(4, n, V)), name


def test_plan_refuses_bad_input():
  with pytest.raises(ValueError, match="unknown schedule 'nope'"):
    build_plan("nope", 2, 4)
  with pytest.raises(ValueError, match="chimera needs an even number of stages"):
    build_plan("chimera", 3, 6)
  with pytest.raises(ValueError, match="version W\\^\\(t-1\\) of block"):
    build_plan("pipedream-2bw", 4, 1, batches=4)


def test_no_message_on_idle_routes():
  """A tick sends on a route only if some device sends there; GPipe's forward phase sends
  nothing backwards, and no schedule at P = 2 uses more than its pairs."""
  plan = build_plan("gpipe", 2, 4)
  from rpd.pipeline.plan import C
  T = plan.T
  sends = plan.table[:, :, C["send"]]
  assert (plan.table[:, 0, C["any_next"]] == (sends > 0).any(1)).all()
  assert plan.table[:, 0, C["any_next"]].sum() < T


def test_residual_stash_equals_reference_and_its_size():
  """``stash="residuals"``: the forward's vjp residuals replace the recompute; the result is
  unchanged (1e-12), each device's stash peaks at the simulator's count of slots, and a slot
  (the largest block's flattened residuals, which include the block's weights) is larger
  than the stage input that ``stash="inputs"`` keeps, and smaller than input + weights +
  every intermediate of the block (bounded here by 4 activations + the block's row)."""
  p, x0 = problem(2)
  b = 2  # samples per microbatch: the problem's batch 2 M split into M
  act = int(np.prod(p.act_shape(b)))
  for name in ("1f1b-flush", "pipedream", "zb-h1", "pipedream-2bw", "chimera"):
    plan = plans(2, 2, group(2, 2))[name]
    res = execute(p, plan, gamma=GAMMA["sgd"], key=KEY, x0=x0, stash="residuals")
    assert np.abs(res.x_SxD - reference(name, 2, "sgd")).max() <= TOL, name
    assert act < res.stash_floats <= x0.shape[1] + 4 * act * 2 + b * 64, name
    assert list(res.peak_stash) == simulator_peak(name, 2, 1), name


def test_data_by_stage_mesh_equals_reference_on_the_concatenated_batch():
  """A 2 x 2 mesh (``data`` x ``stage``): two replicas of the pipeline, each on half of every
  microbatch, their weight gradients averaged (``pmean``) before they land. Microbatch ``m``
  of the reference is the concatenation of the replicas' halves, so the run equals the same
  reference (1e-12) as the one-replica run."""
  from rpd.pipeline import stage_mesh
  p, x0 = problem(2)
  mesh = stage_mesh(2, data=2)
  for name in ("1f1b-flush", "pipedream", "pipemare", "pipedream-2bw", "chimera"):
    plan = plans(2, 2, group(2, 2))[name]
    res = execute(p, plan, gamma=GAMMA["sgd"], key=KEY, x0=x0, mesh=mesh)
    assert np.abs(res.x_SxD - reference(name, 2, "sgd")).max() <= TOL, name
    assert list(res.peak_stash) == simulator_peak(name, 2, 1), name
