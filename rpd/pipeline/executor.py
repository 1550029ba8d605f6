"""The pipeline executor: one jitted ``shard_map`` program, one stage per device.

Device ``s`` of a 1-D mesh with axis ``"stage"`` holds only block ``s`` of ``x_SxD`` (stage
``s``'s parameters), its optimizer state and its buffers. The program is a ``lax.scan`` over
the ticks of a :class:`~rpd.pipeline.plan.Plan` (the schedule's action lists on a clock);
at every tick each device runs the action of its row, through ``lax.switch``:

* ``F(m, s)``: ``a_out = stage_s(w_s, a_in)`` with ``a_in`` from the activation inbox (stage 0
  embeds the inputs; the last stage computes the loss); the input activation and, with weight
  stashing, the weights ``w_s`` are stored in stash slot ``slot``;
* ``B(m, s)``: ``(g_w, g_in) = vjp(stage_s)(w_stash, a_stash)(g_out)``, the forward recomputed
  at the stashed point (the stash holds the stage's input activation, not its internals),
  ``g_out`` from the gradient inbox (the last stage seeds the loss with 1); then
  ``async_stash``: ``w_s <- w_s - gamma * opt(g_w)`` (PipeDream: the backward of ``m`` used the
  weights its forward read); ``sync_flush``: ``g_w`` is accumulated, and the last backward of
  a batch applies the mean over its ``M`` microbatches (one synchronous update per flush);
* idle.

Then, still inside the tick, ``lax.ppermute`` moves the forward's output to stage ``s + 1``
and the backward's input gradient to stage ``s - 1``; the receiver stores it in the inbox
slot of its row. Each device therefore computes only its own stage's forward and backward.

Microbatch ``m`` of the plan uses the sample ``problem.sample(sample_key(key, n))`` (slice
``j`` of it; ``n``, ``j`` from the plan), with :func:`rpd.engine.sample_key`: the engine's key
of microbatch ``n``, so that executor and engine see the same data.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from rpd.engine import get_optimizer, sample_key
from rpd.pipeline.plan import COLS, FWD, Plan
from rpd.problems.layered import is_layered

AXIS = "stage"
_C = {name: i for i, name in enumerate(COLS)}


@dataclasses.dataclass(frozen=True)
class _Static:
  """The static part of a run (hashable: a jit static argument)."""

  S: int
  sync: bool
  G: int
  b: int
  act: tuple
  n_stash: int
  n_inbox: int
  n_ginbox: int


@dataclasses.dataclass
class ExecResult:
  """What :func:`execute` returns.

  Attributes:
    x_SxD: final parameters (numpy).
    losses: the loss of every microbatch's forward on the last stage, in the order they
      ran (``(microbatches,)``; for flushing schedules ``M`` per batch).
    loss_m: the microbatch of each entry of ``losses``.
    peak_stash: measured peak number of stash slots in use, per stage.
    ticks: ticks run.
    wall: seconds (after compilation of the first chunk, see :func:`execute`).
    compile_wall: seconds of the first chunk (compiles and runs).
  """

  x_SxD: np.ndarray
  losses: np.ndarray
  loss_m: np.ndarray
  peak_stash: tuple
  ticks: int
  wall: float
  compile_wall: float


def to_host(a) -> np.ndarray:
  """A (possibly multi-host) sharded array as one numpy array on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))
  return np.asarray(a)


def stage_mesh(S: int) -> jax.sharding.Mesh:
  """A 1-D mesh of the first ``S`` devices with axis ``"stage"``."""
  if jax.device_count() < S:
    raise ValueError(f"{S} stages need {S} devices, only {jax.device_count()} available")
  return jax.make_mesh((S,), (AXIS,), devices=jax.devices()[:S])


def _static(problem, plan: Plan) -> _Static:
  if not is_layered(problem):
    raise ValueError(f"problem {problem.name!r} is not layered (no per-stage functions)")
  if problem.S != plan.S:
    raise ValueError(f"plan has S={plan.S} stages but the problem has S={problem.S}")
  full = jax.eval_shape(problem.sample, jax.random.key(0))
  B = problem.batch_size(full)
  if B % plan.G:
    raise ValueError(f"the problem's batch {B} is not divisible by the {plan.G} microbatches "
                     "of a batch")
  b = B // plan.G
  return _Static(S=plan.S, sync=plan.semantics.synchronous, G=plan.G, b=b,
                 act=tuple(problem.act_shape(b)), n_stash=plan.n_stash,
                 n_inbox=plan.n_inbox, n_ginbox=plan.n_ginbox)


def init_state(problem, plan: Plan, x0_SxD, tx, mesh) -> dict:
  """Per-device state, every leaf with a leading stage axis sharded over ``mesh``."""
  st = _static(problem, plan)
  S, D = x0_SxD.shape
  dt = x0_SxD.dtype
  state = {
      "w": x0_SxD,
      "opt": jax.vmap(tx.init)(x0_SxD),
      "wst": jnp.zeros((S, st.n_stash if not st.sync else 1, D), dt),  # stashed weights
      "ast": jnp.zeros((S, st.n_stash) + st.act, dt),  # stashed input activations
      "ain": jnp.zeros((S, st.n_inbox) + st.act, dt),  # activation inbox
      "gin": jnp.zeros((S, st.n_ginbox) + st.act, dt),  # gradient inbox
      "gacc": jnp.zeros((S, D), dt),  # accumulated gradient (flushing schedules)
      "live": jnp.zeros((S,), jnp.int32),  # stash slots in use
      "peak": jnp.zeros((S,), jnp.int32),  # their peak
  }
  return jax.device_put(state, NamedSharding(mesh, P(AXIS)))


def _stage_fns(problem, st: _Static, batch, dtype):
  """Per stage ``s``: ``f_s(w, a) -> (a_out, loss)`` with uniform shapes over stages."""
  zero_a = jnp.zeros(st.act, dtype)
  zero_l = jnp.zeros((), dtype)

  def make(s):
    def f(w, a):
      out = problem.stage(s, w, a if s > 0 else None, batch)
      if s < st.S - 1:
        return out.astype(dtype), zero_l
      return zero_a, out.astype(dtype)
    return f

  return [make(s) for s in range(st.S)]


def _local(problem, tx, st: _Static, state, table, key, gamma):
  """The program of one device: scan over its rows of the tick table."""
  state = jax.tree.map(lambda a: a[0], state)
  me = jax.lax.axis_index(AXIS)
  S = st.S
  dtype = state["w"].dtype
  zero_a = jnp.zeros(st.act, dtype)

  def micro_batch(n, j):
    full = problem.sample(sample_key(key, n))
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, j * st.b, st.b, 0), full)

  def idle(c, row):
    return c, zero_a, zero_a, jnp.zeros((), dtype)

  def fwd(c, row):
    slot = row[_C["slot"]]
    a_in = c["ain"][jnp.maximum(row[_C["in_slot"]], 0)]
    fns = _stage_fns(problem, st, micro_batch(row[_C["n"]], row[_C["j"]]), dtype)
    a_out, loss = jax.lax.switch(me, fns, c["w"], a_in)
    live = c["live"] + 1
    c = dict(c, ast=c["ast"].at[slot].set(a_in), live=live, peak=jnp.maximum(c["peak"], live))
    if not st.sync:
      c["wst"] = c["wst"].at[slot].set(c["w"])  # weight stashing
    return c, a_out, zero_a, loss

  def bwd(c, row):
    slot = row[_C["slot"]]
    a_in = c["ast"][slot]
    g_out = c["gin"][jnp.maximum(row[_C["gin_slot"]], 0)]
    fns = _stage_fns(problem, st, micro_batch(row[_C["n"]], row[_C["j"]]), dtype)

    def pull(f, s):
      def g(w, a, g_a):
        _, vjp = jax.vjp(f, w, a)
        seed = jnp.asarray(1.0 if s == S - 1 else 0.0, dtype)
        return vjp((g_a if s < S - 1 else zero_a, seed))
      return g

    if st.sync:
      w_used = c["w"]  # one weight version per flush
    else:
      w_used = c["wst"][slot]
    g_w, g_in = jax.lax.switch(me, [pull(f, s) for s, f in enumerate(fns)], w_used, a_in,
                               g_out)
    apply = row[_C["apply"]] > 0
    if st.sync:
      acc = c["gacc"] + g_w
      g_w = acc / st.G
      c = dict(c, gacc=jnp.where(apply, jnp.zeros_like(acc), acc))
    u, opt = tx.update(g_w, c["opt"], c["w"])
    w = jnp.where(apply, c["w"] - gamma * u, c["w"])
    opt = jax.tree.map(lambda new, old: jnp.where(apply, new, old), opt, c["opt"])
    c = dict(c, w=w, opt=opt, live=c["live"] - 1)
    return c, zero_a, g_in.astype(dtype), jnp.zeros((), dtype)

  def tick(c, row):
    c, a_send, g_send, loss = jax.lax.switch(row[_C["kind"]], [idle, fwd, bwd], c, row)
    if S > 1:
      a_recv = jax.lax.ppermute(a_send, AXIS, [(i, i + 1) for i in range(S - 1)])
      g_recv = jax.lax.ppermute(g_send, AXIS, [(i + 1, i) for i in range(S - 1)])
      ra, rg = row[_C["recv_a"]], row[_C["recv_g"]]
      c = dict(c, ain=c["ain"].at[jnp.where(ra >= 0, ra, st.n_inbox)].set(a_recv, mode="drop"),
               gin=c["gin"].at[jnp.where(rg >= 0, rg, st.n_ginbox)].set(g_recv, mode="drop"))
    return c, loss

  state, losses = jax.lax.scan(tick, state, table[:, 0])
  return jax.tree.map(lambda a: a[None], state), losses[:, None]


@functools.partial(jax.jit, static_argnames=("tx", "st", "mesh"), donate_argnums=(1,))
def _run_ticks(problem, state, table, key, gamma, *, tx, st, mesh):
  return jax.shard_map(
      lambda pr, s, t, k, g: _local(pr, tx, st, s, t, k, g), mesh=mesh,
      in_specs=(P(), P(AXIS), P(None, AXIS), P(), P()),
      out_specs=(P(AXIS), P(None, AXIS)), check_vma=False)(problem, state, table, key, gamma)


def execute(problem, plan: Plan, *, gamma: float, key: jax.Array, optimizer="sgd", x0=None,
            mesh=None, chunk: int | None = None, callback=None) -> ExecResult:
  """Run ``plan`` on ``problem`` with one stage per device.

  Args:
    problem: a layered problem (:class:`rpd.problems.layered.Layered`) with ``plan.S``
      stages.
    plan: from :func:`rpd.pipeline.plan.build_plan`.
    gamma: step size.
    key: run key; microbatch samples use :func:`rpd.engine.sample_key` of it.
    optimizer: as in :func:`rpd.engine.run` (``"sgd"``, ``"momentum"``, ``"adam"``, optax).
    x0: initial ``x_SxD`` (default ``problem.init(key)``, as the engine).
    mesh: 1-D mesh with axis ``"stage"`` of ``S`` devices (default :func:`stage_mesh`).
    chunk: ticks per compiled call (default: all in one call); the table is padded with idle
      ticks to a multiple of it and the state stays on the devices between calls.
    callback: ``callback(ticks_done, losses_so_far, w_SxD)`` after every chunk (progress;
      ``w_SxD`` the current parameters, a sharded array).

  Returns:
    an :class:`ExecResult`.
  """
  st = _static(problem, plan)
  mesh = mesh or stage_mesh(plan.S)
  if mesh.shape.get(AXIS) != plan.S or len(mesh.shape) != 1:
    raise ValueError(f"mesh must be 1-D with {plan.S} devices on axis {AXIS!r}, got "
                     f"{dict(mesh.shape)}")
  tx = get_optimizer(optimizer)
  x0 = problem.init(key) if x0 is None else jnp.asarray(x0)
  state = init_state(problem, plan, x0, tx, mesh)
  chunk = chunk or plan.T
  n_chunks = -(-plan.T // chunk)
  table = plan.padded(n_chunks * chunk)
  kind, last_m = plan.column("kind"), plan.column("m")
  gamma = jnp.asarray(gamma, x0.dtype)
  spec = NamedSharding(mesh, P(None, AXIS))
  losses, loss_m = [], []
  compile_wall = 0.0
  t0 = time.perf_counter()
  for i in range(n_chunks):
    rows = jax.device_put(table[i * chunk:(i + 1) * chunk], spec)
    state, out = _run_ticks(problem, state, rows, key, gamma, tx=tx, st=st, mesh=mesh)
    out = to_host(out)[:, plan.S - 1]
    sel = kind[i * chunk:(i + 1) * chunk, plan.S - 1] == FWD
    losses.append(out[:len(sel)][sel])
    loss_m.append(last_m[i * chunk:(i + 1) * chunk, plan.S - 1][sel])
    if i == 0:
      compile_wall = time.perf_counter() - t0
      t0 = time.perf_counter()
    if callback is not None:
      callback(min((i + 1) * chunk, plan.T), np.concatenate(losses), state["w"])
  jax.block_until_ready(state["w"])
  wall = time.perf_counter() - t0
  return ExecResult(x_SxD=to_host(state["w"]), losses=np.concatenate(losses),
                    loss_m=np.concatenate(loss_m),
                    peak_stash=tuple(int(v) for v in to_host(state["peak"])),
                    ticks=plan.T, wall=wall, compile_wall=compile_wall)
