"""The pipeline executor: one jitted ``shard_map`` program, each device runs its own blocks.

Device ``p`` of the ``"stage"`` mesh axis holds only its ``L`` local blocks (``w[c]`` =
``x_SxD[local_blocks[p, c]]``), their optimizer state and its buffers. The program is a
``lax.scan`` over the rows of a :class:`~rpd.pipeline.plan.Plan` (the schedule's action lists
compiled onto a clock; synchronous schedules: an outer scan over flushes). At every tick each
device runs the action of its row through ``lax.switch`` (the branch index is data: the
device's own row, so each device computes only its own blocks):

* ``F(m, b)``: ``a_out = f_b(w, a_in)`` with ``a_in`` from the activation inbox (block 0
  embeds the inputs; block ``S - 1`` computes the loss); the stash keeps ``a_in`` (``--stash
  inputs``: the backward recomputes ``f_b``) or the ``vjp`` residuals of ``f_b`` (``--stash
  residuals``), and, with weight stashing (PipeDream), the weights ``w`` read;
* ``B(m, b)``: ``(g_w, g_in) = vjp(f_b)(w_B, a_in)(g_out)`` with ``g_out`` from the gradient
  inbox (block ``S - 1`` seeds the loss with 1) and ``w_B`` the weights the semantics says the
  backward reads: stashed (PipeDream), current (PipeMare), the batch's version (2BW), the
  batch's weights (synchronous); a split backward computes ``g_in`` in ``B`` and ``g_w`` in
  ``W``;
* the weight gradient then lands: accumulated (synchronous, 2BW) or applied at once
  (asynchronous; ``w <- w - gamma opt(g_w)``); a 2BW batch's last backward writes the new
  version ``W^(t+1) = W^(t) - gamma opt(mean g)``; a synchronous batch ends with the flush
  ``w <- w - gamma opt(sum g / M)`` (Chimera sums the gradients of the block's two replicas,
  one ``ppermute`` between devices ``p`` and ``P - 1 - p``).

Messages: the forward's output and the backward's input gradient travel by ``ppermute`` to
the next device, the previous one, or stay on the device (the turn of a V); a ``ppermute``
runs only on ticks where some device sends on that route (``lax.cond``) and only over the
device pairs the schedule uses.

A ``"data"`` mesh axis (2-D mesh ``data x stage``) runs ``R`` replicas of the pipeline on
different slices of each microbatch and averages their weight gradients (``pmean``) before
they land: the run equals the same schedule on the concatenated microbatch.

Microbatch samples use :func:`rpd.engine.sample_key` (the engine's key of sample ``n``).
"""
from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import NamedSharding, PartitionSpec as P

from rpd.engine import get_optimizer, sample_key
from rpd.pipeline.plan import ACT, BIN, BWD, C, GRAD, NEXT, PREV, WGT, Plan
from rpd.problems.layered import is_layered

AXIS = "stage"
DATA = "data"
STASH_MODES = ("inputs", "residuals")


@dataclasses.dataclass(frozen=True)
class _Static:
  """The static part of a run (hashable: a jit static argument)."""

  P: int
  L: int
  S: int
  R: int  # data-parallel replicas
  M: int
  b: int
  act: tuple
  n_stash: int
  n_inbox: int
  n_ginbox: int
  pairs_next: tuple
  pairs_prev: tuple
  stash: str
  res_size: int


@dataclasses.dataclass
class ExecResult:
  """What :func:`execute` returns.

  Attributes:
    x_SxD: final parameters (numpy; block ``b`` from the device that holds it).
    losses: the loss of every microbatch's forward on the last block, in tick order.
    loss_m: the microbatch of each entry of ``losses`` (per batch for synchronous plans).
    peak_stash: measured peak number of stash slots in use, per device.
    stash_floats: floats one stash slot holds (activation or residuals, without weights).
    ticks: ticks run.
    wall: seconds (after compilation of the first chunk, see :func:`execute`).
    compile_wall: seconds of the first chunk (compiles and runs).
  """

  x_SxD: np.ndarray
  losses: np.ndarray
  loss_m: np.ndarray
  peak_stash: tuple
  stash_floats: int
  ticks: int
  wall: float
  compile_wall: float


def to_host(a) -> np.ndarray:
  """A (possibly multi-host) sharded array as one numpy array on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))
  return np.asarray(a)


def stage_mesh(P_: int, data: int = 1) -> jax.sharding.Mesh:
  """A mesh of the first ``data * P_`` devices: axis ``"stage"`` (and ``"data"`` if > 1)."""
  n = P_ * data
  if jax.device_count() < n:
    raise ValueError(f"{n} devices needed, only {jax.device_count()} available")
  if data == 1:
    return jax.make_mesh((P_,), (AXIS,), devices=jax.devices()[:P_])
  return jax.make_mesh((data, P_), (DATA, AXIS), devices=jax.devices()[:n])


def _stage_fns(problem, S: int, act, dtype):
  """Per block ``b``: ``f_b(w, a, batch) -> (a_out, loss)`` with uniform shapes."""
  zero_a = jnp.zeros(act, dtype)
  zero_l = jnp.zeros((), dtype)

  def make(b):
    def f(w, a, batch):
      out = problem.stage(b, w, a if b > 0 else None, batch)
      if b < S - 1:
        return out.astype(dtype), zero_l
      return zero_a, out.astype(dtype)
    return f

  return [make(b) for b in range(S)]


def _residual_size(problem, S, act, dtype, D, batch) -> int:
  """Largest number of floats of the ``vjp`` residuals of one block (``--stash residuals``)."""
  fns = _stage_fns(problem, S, act, dtype)
  n = 0
  for f in fns:
    def res(w, a, batch, f=f):
      _, vjp = jax.vjp(lambda w, a: f(w, a, batch), w, a)
      return ravel_pytree(vjp)[0]
    n = max(n, int(jax.eval_shape(res, jax.ShapeDtypeStruct((D,), dtype),
                                  jax.ShapeDtypeStruct(act, dtype), batch).shape[0]))
  return n


def _static(problem, plan: Plan, R: int, stash: str, dtype, D) -> _Static:
  if not is_layered(problem):
    raise ValueError(f"problem {problem.name!r} is not layered (no per-stage functions)")
  if problem.S != plan.S:
    raise ValueError(f"the plan runs {plan.S} blocks but the problem has S={problem.S}")
  if stash not in STASH_MODES:
    raise ValueError(f"unknown stash {stash!r}; known: {', '.join(STASH_MODES)}")
  sem = plan.semantics
  if stash == "residuals" and sem.split_reads:
    raise ValueError(f"--stash residuals is undefined for {plan.schedule}: its backward reads "
                     "the current weights, which residuals saved by the forward do not")
  full = jax.eval_shape(problem.sample, jax.random.key(0))
  B = problem.batch_size(full)
  if B % (plan.G * R):
    raise ValueError(f"the problem's batch {B} is not divisible by {plan.G} microbatches "
                     f"times {R} data replicas")
  b = B // (plan.G * R)
  act = tuple(problem.act_shape(b))
  res = 0
  if stash == "residuals":
    mb = jax.tree.map(lambda a: jax.ShapeDtypeStruct((b,) + a.shape[1:], a.dtype), full)
    res = _residual_size(problem, plan.S, act, dtype, D, mb)
  return _Static(P=plan.P, L=plan.L, S=plan.S, R=R, M=plan.M, b=b, act=act,
                 n_stash=plan.n_stash, n_inbox=plan.n_inbox, n_ginbox=plan.n_ginbox,
                 pairs_next=plan.pairs_next, pairs_prev=plan.pairs_prev, stash=stash,
                 res_size=res)


def semantics_flags(plan: Plan) -> np.ndarray:
  """The semantics as data (one compiled program serves every schedule of the same shapes):
  ``[synchronous, weight stashing, double-buffered, two replicas]``."""
  sem = plan.semantics
  return np.array([sem.synchronous, sem.asynchronous and sem.stashes, sem.double_buffered,
                   plan.replicas == 2], np.int32)


def init_state(plan: Plan, st: _Static, x0_SxD, tx) -> dict:
  """Per-device state, every leaf with a leading device axis (``(P, ...)``)."""
  S, D = x0_SxD.shape
  dt = x0_SxD.dtype
  lb = np.maximum(plan.local_blocks, 0)
  w = x0_SxD[lb]  # (P, L, D)
  n = st.n_stash
  state = {
      "w": w,
      "opt": jax.vmap(jax.vmap(tx.init))(w),
      "wst": jnp.zeros((st.P, n, D), dt),  # stashed weights (weight stashing)
      "wv": jnp.stack([w, w], 1),  # the two weight versions (2BW)
      "ast": jnp.zeros((st.P, n) + (st.act if st.stash == "inputs" else (st.res_size,)), dt),
      "ain": jnp.zeros((st.P, st.n_inbox) + st.act, dt),  # activation inbox
      "gin": jnp.zeros((st.P, st.n_ginbox) + st.act, dt),  # gradient inbox
      "gacc": jnp.zeros((st.P, st.L, D), dt),  # accumulated gradients
      "live": jnp.zeros((st.P,), jnp.int32),  # stash slots in use
      "peak": jnp.zeros((st.P,), jnp.int32),  # their peak
  }
  return state


def _index(tree, i):
  return jax.tree.map(lambda a: a[i], tree)


def _set(tree, i, new):
  return jax.tree.map(lambda a, v: a.at[i].set(v), tree, new)


def _local(problem, tx, st: _Static, state, table, key, gamma, flags):
  """The program of one device: a scan over its rows of the tick table."""
  state = jax.tree.map(lambda a: a[0, 0] if st.R > 1 else a[0], state)
  table = table[:, 0, 0] if st.R > 1 else table[:, 0]
  rep = jax.lax.axis_index(DATA) if st.R > 1 else 0
  dtype = state["w"].dtype
  zero_a = jnp.zeros(st.act, dtype)
  zero_w = jnp.zeros(state["w"].shape[-1:], dtype)
  fns = _stage_fns(problem, st.S, st.act, dtype)
  sync, stash_w, two_bw, chimera = (flags[i] > 0 for i in range(4))
  mode = jnp.where(sync, 0, jnp.where(two_bw, 2, 1))  # how a weight gradient lands

  def micro_batch(n, j):
    full = problem.sample(sample_key(key, n))
    start = (j * st.R + rep) * st.b
    return jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, start, st.b, 0), full)

  def pack(vjp):
    flat = ravel_pytree(vjp)[0]
    return jnp.pad(flat, (0, st.res_size - flat.shape[0]))

  def unpack(b, flat, w, a, batch):
    # The residual layout of block b: trace its vjp for the structure, then fill it.
    _, vjp = jax.vjp(lambda w, a: fns[b](w, a, batch), w, a)
    flat0, unravel = ravel_pytree(vjp)
    return unravel(flat[:flat0.shape[0]])

  def seed(b, g_out):
    return (g_out if b < st.S - 1 else zero_a, jnp.asarray(1.0 if b == st.S - 1 else 0.0, dtype))

  def weights(c, row, backward: bool):
    cc = row[C["c"]]
    which = jnp.where(two_bw, 1, jnp.where(stash_w & backward, 2, 0))
    return jax.lax.switch(which, [lambda: c["w"][cc], lambda: c["wv"][row[C["ver"]], cc],
                                  lambda: c["wst"][row[C["slot"]]]])

  def idle(c, row, batch):
    return c, zero_a, zero_w, jnp.zeros((), dtype)

  def fwd(c, row, batch):
    slot = row[C["slot"]]
    a_in = c["ain"][jnp.maximum(row[C["in_slot"]], 0)]
    w = weights(c, row, False)
    if st.stash == "inputs":
      a_out, loss = jax.lax.switch(row[C["b"]], fns, w, a_in, batch)
      kept = a_in
    else:
      def with_res(f):
        def g(w, a, batch):
          (a_out, loss), vjp = jax.vjp(lambda w, a: f(w, a, batch), w, a)
          return a_out, loss, pack(vjp)
        return g
      a_out, loss, kept = jax.lax.switch(row[C["b"]], [with_res(f) for f in fns], w, a_in,
                                         batch)
    live = c["live"] + 1
    c = dict(c, ast=c["ast"].at[slot].set(kept), live=live, peak=jnp.maximum(c["peak"], live))
    c["wst"] = jax.lax.cond(stash_w, lambda s: s.at[slot].set(w), lambda s: s, c["wst"])
    return c, a_out, zero_w, loss

  def pulls(want_w: bool, want_in: bool):
    def make(b, f):
      def g(w, kept, g_out, batch):
        if st.stash == "inputs":
          _, vjp = jax.vjp(lambda w, a: f(w, a, batch), w, kept)
        else:
          vjp = unpack(b, kept, w, zero_a, batch)
        g_w, g_in = vjp(seed(b, g_out))
        return (g_w if want_w else zero_w), (g_in.astype(dtype) if want_in else zero_a)
      return g
    return [make(b, f) for b, f in enumerate(fns)]

  def backward(kind):
    want_w, want_in = kind in (BWD, WGT), kind in (BWD, BIN)
    releases = kind in (BWD, WGT)

    def run(c, row, batch):
      kept = c["ast"][row[C["slot"]]]
      g_out = c["gin"][jnp.maximum(row[C["gin_slot"]], 0)]
      w = weights(c, row, True)
      g_w, g_in = jax.lax.switch(row[C["b"]], pulls(want_w, want_in), w, kept, g_out, batch)
      if releases:
        c = dict(c, live=c["live"] - 1)
      return c, g_in, g_w, jnp.zeros((), dtype)
    return run

  def land(c, row, g_w):
    """The weight gradient of a ``B`` (unsplit) or ``W`` tick lands; other ticks skip this."""
    cc = row[C["c"]]
    upd = row[C["upd"]] > 0
    if st.R > 1:
      g_w = jax.lax.pmean(g_w, DATA)

    def accumulate(c):  # synchronous: until the flush
      return dict(c, gacc=c["gacc"].at[cc].add(g_w))

    def apply_now(c):  # asynchronous: the update lands at once
      u, opt = tx.update(g_w, _index(c["opt"], cc), c["w"][cc])
      return dict(c, w=c["w"].at[cc].add(-gamma * u), opt=_set(c["opt"], cc, opt))

    def double_buffered(c):  # 2BW: accumulate; the batch's last backward writes W^(t+1)
      acc = c["gacc"][cc] + g_w
      ver = row[C["ver"]]
      latest = c["wv"][1 - ver, cc]
      u, opt = tx.update(acc / st.M, _index(c["opt"], cc), latest)
      opt = jax.tree.map(lambda n, o: jnp.where(upd, n, o), opt, _index(c["opt"], cc))
      new = jnp.where(upd, latest - gamma * u, c["wv"][ver, cc])
      return dict(c, wv=c["wv"].at[ver, cc].set(new), opt=_set(c["opt"], cc, opt),
                  gacc=c["gacc"].at[cc].set(jnp.where(upd, 0.0, acc)))

    has = (row[C["kind"]] == BWD) | (row[C["kind"]] == WGT)
    return jax.lax.cond(has, lambda c: jax.lax.switch(
        mode, [accumulate, apply_now, double_buffered], c), lambda c: c, c)

  def receive(c, buf, slot, msg):
    ok = slot >= 0
    ia = jnp.where(ok & (buf == ACT), slot, st.n_inbox)
    ig = jnp.where(ok & (buf == GRAD), slot, st.n_ginbox)
    return dict(c, ain=c["ain"].at[ia].set(msg, mode="drop"),
                gin=c["gin"].at[ig].set(msg, mode="drop"))

  def shift(msg, flag, pairs):
    if not pairs:
      return jnp.zeros_like(msg)
    return jax.lax.cond(flag > 0, lambda v: jax.lax.ppermute(v, AXIS, list(pairs)),
                        jnp.zeros_like, msg)

  branches = [idle, fwd, backward(BWD), backward(BIN), backward(WGT)]

  def tick(c, row):
    batch = micro_batch(jnp.maximum(row[C["n"]], 0), jnp.maximum(row[C["j"]], 0))
    c, msg, g_w, loss = jax.lax.switch(row[C["kind"]], branches, c, row, batch)
    c = land(c, row, g_w)
    send = row[C["send"]]
    c = receive(c, row[C["rx_self_buf"]], row[C["rx_self_slot"]], msg)
    if st.P > 1:
      r_prev = shift(jnp.where(send == NEXT, msg, 0.0), row[C["any_next"]], st.pairs_next)
      r_next = shift(jnp.where(send == PREV, msg, 0.0), row[C["any_prev"]], st.pairs_prev)
      c = receive(c, row[C["rx_prev_buf"]], row[C["rx_prev_slot"]], r_prev)
      c = receive(c, row[C["rx_next_buf"]], row[C["rx_next_slot"]], r_next)
    return c, loss

  def flush(c):
    g = c["gacc"]
    # Chimera: the block's other replica is chunk 1 - c of device P - 1 - p.
    other = jax.lax.cond(chimera, lambda g: jax.lax.ppermute(
        g, AXIS, [(q, st.P - 1 - q) for q in range(st.P)])[::-1], jnp.zeros_like, g)
    g = (g + other) / st.M
    u, opt = jax.vmap(tx.update)(g, c["opt"], c["w"])
    return dict(c, w=c["w"] - gamma * u, opt=opt, gacc=jnp.zeros_like(c["gacc"]))

  def step(c, row):
    c, loss = tick(c, row)
    c = jax.lax.cond(row[C["flush"]] > 0, flush, lambda c: c, c)
    return c, loss

  state, losses = jax.lax.scan(step, state, table)
  lead = (lambda a: a[None, None]) if st.R > 1 else (lambda a: a[None])
  return jax.tree.map(lead, state), (losses[:, None, None] if st.R > 1 else losses[:, None])


def _specs(R: int):
  dev = P(DATA, AXIS) if R > 1 else P(AXIS)
  tab = P(None, DATA, AXIS) if R > 1 else P(None, AXIS)
  out = P(None, DATA, AXIS) if R > 1 else P(None, AXIS)
  return dev, tab, out


@functools.partial(jax.jit, static_argnames=("tx", "st", "mesh"), donate_argnums=(1,))
def _run(problem, state, table, key, gamma, flags, *, tx, st, mesh):
  dev, tab, out = _specs(st.R)
  return jax.shard_map(
      lambda pr, s, t, k, g, f: _local(pr, tx, st, s, t, k, g, f), mesh=mesh,
      in_specs=(P(), dev, tab, P(), P(), P()), out_specs=(dev, out),
      check_vma=False)(problem, state, table, key, gamma, flags)


def execute(problem, plan: Plan, *, gamma: float, key: jax.Array, optimizer="sgd", x0=None,
            mesh=None, stash: str = "inputs", chunk: int | None = None,
            callback=None) -> ExecResult:
  """Run ``plan`` on ``problem``, each device running only its own blocks.

  Args:
    problem: a layered problem (:class:`rpd.problems.layered.Layered`) with ``plan.S``
      blocks.
    plan: from :func:`rpd.pipeline.plan.build_plan`.
    gamma: step size.
    key: run key; microbatch samples use :func:`rpd.engine.sample_key` of it.
    optimizer: as in :func:`rpd.engine.run` (``"sgd"``, ``"momentum"``, ``"adam"``, optax).
    x0: initial ``x_SxD`` (default ``problem.init(key)``); never modified.
    mesh: mesh with axis ``"stage"`` of ``plan.P`` devices, optionally a ``"data"`` axis
      (default :func:`stage_mesh`).
    stash: ``"inputs"`` (the backward recomputes the block's forward from its stashed input)
      or ``"residuals"`` (the forward's ``vjp`` residuals are stashed).
    chunk: ticks per compiled call (default all; the table is padded with idle ticks to a
      multiple of it); the state stays on the devices between calls.
    callback: ``callback(ticks_done, losses_so_far, w_SxD)`` after every call.

  Returns:
    an :class:`ExecResult`.
  """
  mesh = mesh or stage_mesh(plan.P)
  shape = dict(mesh.shape)
  R = shape.get(DATA, 1)
  if shape.get(AXIS) != plan.P or set(shape) - {AXIS, DATA}:
    raise ValueError(f"mesh must have {plan.P} devices on axis {AXIS!r} (and optionally a "
                     f"{DATA!r} axis), got {shape}")
  tx = get_optimizer(optimizer)
  x0 = problem.init(key) if x0 is None else jnp.array(x0, copy=True)
  st = _static(problem, plan, R, stash, x0.dtype, x0.shape[1])
  dev, tab_spec, _ = _specs(R)
  state = init_state(plan, st, x0, tx)
  if R > 1:
    state = jax.tree.map(lambda a: jnp.broadcast_to(a[None], (R,) + a.shape), state)
  state = jax.device_put(state, NamedSharding(mesh, dev))
  per_call = chunk or plan.T
  n_calls = -(-plan.T // per_call)
  table = plan.padded(n_calls * per_call).table
  is_loss = table[:, :, C["loss"]] > 0
  m_col = table[:, :, C["m"]]
  gamma = jnp.asarray(gamma, x0.dtype)
  flags = jnp.asarray(semantics_flags(plan))
  losses, loss_m = [], []
  compile_wall = 0.0
  t0 = time.perf_counter()
  for i in range(n_calls):
    sl = slice(i * per_call, (i + 1) * per_call)
    rows = table[sl]
    if R > 1:
      rows = np.broadcast_to(rows[:, None], (rows.shape[0], R) + rows.shape[1:])
    rows = jax.device_put(rows, NamedSharding(mesh, tab_spec))
    state, out = _run(problem, state, rows, key, gamma, flags, tx=tx, st=st, mesh=mesh)
    out = to_host(out)
    out = out[:, 0] if R > 1 else out  # (ticks, P)
    losses.extend(out[is_loss[sl]])
    loss_m.extend(m_col[sl][is_loss[sl]])
    if i == 0:
      compile_wall = time.perf_counter() - t0
      t0 = time.perf_counter()
    if callback is not None:
      callback(min((i + 1) * per_call, plan.T), np.asarray(losses), _gather_w(state, plan, R))
  jax.block_until_ready(state["w"])
  wall = time.perf_counter() - t0
  peak = to_host(state["peak"])
  peak = peak[0] if R > 1 else peak
  return ExecResult(x_SxD=np.asarray(_gather_w(state, plan, R)), losses=np.asarray(losses),
                    loss_m=np.asarray(loss_m, int), peak_stash=tuple(int(v) for v in peak),
                    stash_floats=int(st.res_size if stash == "residuals"
                                     else np.prod(st.act)),
                    ticks=plan.T, wall=wall, compile_wall=compile_wall)


def _gather_w(state, plan: Plan, R: int) -> np.ndarray:
  """``x_SxD`` from the devices' local blocks (block ``b`` from its first holder)."""
  two_bw = plan.semantics.double_buffered
  w = to_host(state["wv"] if two_bw else state["w"])
  w = w[0] if R > 1 else w
  w = w[:, plan.batches % 2] if two_bw else w  # version `batches` (2BW)
  out = np.zeros((plan.S,) + w.shape[2:], w.dtype)
  for p in range(plan.P):
    for c in range(plan.L):
      b = plan.local_blocks[p, c]
      if b >= 0 and not (plan.replicas == 2 and c == 1):
        out[b] = w[p, c]
  return out
