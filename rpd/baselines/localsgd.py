"""LocalSGD: ``W`` workers with full model replicas, ``H`` local SGD steps, then exact averaging.

The baseline that PipeDream is compared with (on the same ``S`` devices, so ``W = S`` by
default). Worker ``w`` holds a full copy ``x_w`` (all ``S`` blocks, the same padded ``x_SxD``
layout as every :class:`~rpd.problems.base.Problem`) and its own data stream. One *round*::

    x_w^{r, 0} = xbar^r                                        (w = 1..W)
    x_w^{r, h+1} = x_w^{r, h} - gamma * g(x_w^{r, h}; xi_{w, r, h})   (h = 0..H-1)
    xbar^{r+1} = (1 / W) sum_w x_w^{r, H}                      (exact all-reduce)

with independent samples ``xi_{w, r, h} = problem.sample(split(fold_in(fold_in(key, r), h),
W)[w])``. With ``H = 1`` a round is one step of minibatch SGD with the ``W``-fold batch:
``xbar^{r+1} = xbar^r - gamma * (1/W) sum_w g(xbar^r; xi_{w, r, 0})``. With exact gradients
(no sampling noise) all replicas stay equal and ``R`` rounds are ``R * H`` steps of gradient
descent.

Counting: ``k`` = local steps per worker, ``k = r * H`` after round ``r`` (each worker has
then computed ``k`` stochastic gradients; ``W * k`` in all). A PipeDream run of ``K`` block
updates has computed ``K / S`` gradients (microbatches), so equal ``k`` and ``K / S`` mean
equal work per device; the experiments compare on simulated time (:mod:`rpd.simtime`).

Metrics, recorded at the averaged model every ``record_every`` rounds (first entry = ``x0``),
named as in the engine where they mean the same: ``k``, ``loss`` (``full_loss(xbar)``),
``grad_norm_sq`` (``||grad f(xbar)||^2``), and ``drift_x_err`` = ``(1/W) sum_w
||x_w^{r, H} - xbar^{r+1}||^2`` just before the average (the replicas' disagreement, LocalSGD's
counterpart of the stale-read error; 0 at the first record). ``time`` (simulated time of the
record, :func:`rpd.simtime.localsgd_round_times`) is added outside the jitted program.

Divergence (a non-finite averaged model) is caught inside the loop: the run freezes, later
records are ``inf``, and ``diverged`` / ``diverged_at`` (the ``k`` of the first bad round)
report it, so a sweep carries on.
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rpd import codegen as rpd_codegen, simtime


@dataclasses.dataclass
class BaselineResult:
  """Outcome of a baseline run (leading config axis on every field for a sweep).

  Attributes:
    x_SxD: final averaged parameters.
    metrics: name -> array over record points (see the module docstring).
    diverged: whether a non-finite model appeared.
    diverged_at: ``k`` of the first non-finite round, ``-1`` if none.
    K: local steps per worker ``R * H``.
    S: number of blocks of the problem.
    H: local steps per round.
    W: number of workers.
  """

  x_SxD: np.ndarray
  metrics: dict
  diverged: np.ndarray
  diverged_at: np.ndarray
  K: int
  S: int
  H: int
  W: int


def _local_round(problem, W: int, H, gamma, key, r, xbar_SxD):
  """One round: ``H`` local steps on each of ``W`` replicas, then the average (``H`` may be
  traced: a loop with a run-time trip count)."""

  def step(h, x_WxSxD):
    keys = jax.random.split(jax.random.fold_in(jax.random.fold_in(key, r), h), W)
    batch = jax.vmap(problem.sample)(keys)
    g_WxSxD = jax.vmap(problem.grad)(x_WxSxD, batch)
    return x_WxSxD - gamma * g_WxSxD

  x_WxSxD = jnp.broadcast_to(xbar_SxD, (W,) + xbar_SxD.shape)
  x_WxSxD = jax.lax.fori_loop(0, H, step, x_WxSxD)
  new_SxD = jnp.mean(x_WxSxD, axis=0)
  drift = jnp.mean(jnp.sum((x_WxSxD - new_SxD) ** 2, axis=(1, 2)))
  return new_SxD, drift


METRICS = ("loss", "grad_norm_sq")  # computed at the records (the ``metrics`` option)


def _metrics(problem, x_SxD, metrics=METRICS):
  """``(loss, ||grad f||^2)`` at ``x``; one not in ``metrics`` is ``nan``, not computed."""
  nan = jnp.full((), jnp.nan, x_SxD.dtype)
  loss = problem.full_loss(x_SxD) if "loss" in metrics else nan
  gn = jnp.sum(problem.full_grad(x_SxD) ** 2) if "grad_norm_sq" in metrics else nan
  return loss, gn


@functools.partial(jax.jit, static_argnames=("W", "n_rec", "metrics"))
def _run(problem, gamma, key, x0_SxD, H, record_every, *, W, n_rec, metrics=METRICS):
  """The jitted LocalSGD loop: a scan over the ``n_rec`` records, loops over the rounds of a
  record and the local steps of a round. ``H`` and ``record_every`` are traced int32
  scalars, so one compiled program serves every ``H`` and number of rounds with the same
  number of records (the same operations on the same values as static counts)."""
  dtype = x0_SxD.dtype

  def one_round(carry, r):
    x_SxD, diverged, div_at, _ = carry
    new_SxD, drift = _local_round(problem, W, H, gamma, key, r, x_SxD)
    bad = ~jnp.all(jnp.isfinite(new_SxD))
    first = bad & ~diverged
    div_at = jnp.where(first, (r * H).astype(div_at.dtype), div_at)  # k at the bad round's start
    diverged = diverged | bad
    x_SxD = jnp.where(diverged, x_SxD, new_SxD)
    drift = jnp.where(diverged, jnp.inf, drift)
    return (x_SxD, diverged, div_at, drift.astype(dtype)), None

  def one_record(carry, rec):
    # Record rec follows rec * record_every rounds; record 0 (at x0, no round before it) is
    # made by the same code as the others, so the program holds one copy of the metrics.
    n = jnp.where(rec > 0, record_every, 0)
    carry = jax.lax.fori_loop(0, n, lambda i, c: one_round(c, (rec - 1) * record_every + i)[0],
                              carry)
    x_SxD, diverged, _, drift = carry
    loss, gn = _metrics(problem, x_SxD, metrics)
    inf = jnp.asarray(jnp.inf, dtype)
    after = rec > 0  # the values at x0 are kept as they are
    if "loss" in metrics:
      loss = jnp.where(after & (diverged | ~jnp.isfinite(loss)), inf, loss)
    if "grad_norm_sq" in metrics:
      gn = jnp.where(after & (diverged | ~jnp.isfinite(gn)), inf, gn)
    return carry, (loss, gn, drift)

  init = (x0_SxD, jnp.asarray(False), jnp.asarray(-1, jnp.int32), jnp.asarray(0.0, dtype))
  carry, (loss, gn, drift) = jax.lax.scan(one_record, init, jnp.arange(n_rec + 1))
  return carry[0], carry[1], carry[2], loss, gn, drift


_SWEEP_STATIC = ("W", "n_rec", "metrics")


def _sweep_body(problem, gammas, keys, x0_SxD, H, record_every, *, W, n_rec, metrics=METRICS):
  """``vmap`` of :func:`_run` over ``(gamma, key)`` pairs: one compiled program."""
  fn = lambda g, k: _run(problem, g, k, x0_SxD, H, record_every, W=W, n_rec=n_rec,
                         metrics=metrics)
  return jax.vmap(fn)(gammas, keys)


_sweep = jax.jit(_sweep_body, static_argnames=_SWEEP_STATIC)


def _counts(H: int, rounds: int, record_every: int) -> dict:
  """The traced counts and the static record count of :func:`_run` / :func:`_sweep`."""
  return dict(H=jnp.asarray(H, jnp.int32), record_every=jnp.asarray(record_every, jnp.int32),
              n_rec=rounds // record_every)


@dataclasses.dataclass(frozen=True)
class LocalSGD:
  """LocalSGD with ``H`` local steps per round (see the module docstring).

  Attributes:
    H: local SGD steps between two averages (``>= 1``).
    workers: number of workers ``W``; ``None`` = the problem's ``S`` (same devices as PD).
  """

  H: int = 1
  workers: int | None = None
  name: str = "localsgd"

  def __post_init__(self):
    if int(self.H) < 1:
      raise ValueError(f"LocalSGD needs H >= 1, got H={self.H}")
    if self.workers is not None and int(self.workers) < 1:
      raise ValueError(f"LocalSGD needs workers >= 1, got {self.workers}")

  def _check(self, problem, rounds, record_every):
    W = int(self.workers or problem.S)
    record_every = int(record_every or rounds)
    if rounds < 1 or record_every < 1 or rounds % record_every:
      raise ValueError(f"rounds={rounds} must be a positive multiple of "
                       f"record_every={record_every}")
    return W, record_every

  def _result(self, problem, out, W, rounds, record_every, cost, batched, metrics=METRICS):
    x, diverged, div_at, loss, gn, drift = (np.asarray(a) for a in out)
    k = np.arange(rounds // record_every + 1) * record_every * self.H
    t_rounds = simtime.localsgd_round_times(rounds, self.H, problem.S, problem.d,
                                            cost or simtime.CostModel())
    time = np.concatenate([[0.0], t_rounds[record_every - 1::record_every]])
    values = {"loss": loss, "grad_norm_sq": gn}
    metrics = {m: values[m] for m in METRICS if m in metrics}  # those computed
    metrics["drift_x_err"] = drift
    lead = loss.shape[:-1]
    metrics["k"] = np.broadcast_to(k, lead + k.shape).copy()
    metrics["time"] = np.broadcast_to(time, lead + time.shape).copy()
    return BaselineResult(x_SxD=x, metrics=metrics, diverged=diverged if batched else
                          bool(diverged), diverged_at=div_at if batched else int(div_at),
                          K=rounds * self.H, S=problem.S, H=self.H, W=W)

  def run(self, problem, *, gamma: float, rounds: int, key: jax.Array,
          record_every: int | None = None, x0=None,
          cost: simtime.CostModel | None = None) -> BaselineResult:
    """Run ``rounds`` rounds (``K = rounds * H`` local steps per worker).

    Args:
      problem: a :class:`~rpd.problems.base.Problem`.
      gamma: step size.
      rounds: number of averagings ``R``.
      key: ``jax.random.key(seed)``; worker streams are derived from it.
      record_every: record every this many rounds (default: only start and end).
      x0: initial ``x0_SxD`` (default ``problem.init(key)``).
      cost: cost model for the ``time`` metric (default :class:`rpd.simtime.CostModel`).

    Returns:
      a :class:`BaselineResult`.
    """
    W, record_every = self._check(problem, rounds, record_every)
    x0 = problem.init(key) if x0 is None else jnp.asarray(x0)
    out = _run(problem, jnp.asarray(gamma, x0.dtype), key, x0, W=W,
               **_counts(int(self.H), rounds, record_every))
    return self._result(problem, out, W, rounds, record_every, cost, batched=False)

  def sweep(self, problem, *, gammas, seeds, rounds: int, record_every: int | None = None,
            x0=None, cost: simtime.CostModel | None = None,
            metrics=METRICS, codegen: str | None = None) -> BaselineResult:
    """``vmap`` over configurations ``(gammas[c], seeds[c])``: one compiled program.

    Every field of the result gets a leading config axis. ``x0`` defaults to
    ``problem.init(jax.random.key(seeds[0]))`` shared by all configurations (as the engine's
    sweep; for the convex problems it is zero anyway). ``metrics``: those of ``"loss"`` and
    ``"grad_norm_sq"`` the records compute (the other is left out of the result; each costs
    a full-data evaluation per record and its code in the program; the iterates do not
    depend on it). ``codegen``: the program's XLA:CPU code generation, as in
    :func:`rpd.engine.sweep`.
    """
    rpd_codegen.check(codegen)
    bad = [m for m in metrics if m not in METRICS]
    if bad:
      raise ValueError(f"unknown record metric {bad[0]!r}; known: {', '.join(METRICS)}")
    metrics = tuple(m for m in METRICS if m in metrics)
    gammas = np.asarray(gammas, dtype=float)
    seeds = np.asarray(seeds)
    if gammas.shape != seeds.shape or gammas.ndim != 1:
      raise ValueError("gammas and seeds must be 1-D of the same length")
    W, record_every = self._check(problem, rounds, record_every)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
    x0 = problem.init(jax.random.key(int(seeds[0]))) if x0 is None else jnp.asarray(x0)
    program = (_sweep if codegen is None
               else rpd_codegen.jit(_sweep_body, codegen, _SWEEP_STATIC))
    out = program(problem, jnp.asarray(gammas, x0.dtype), keys, x0, W=W, metrics=metrics,
                  **_counts(int(self.H), rounds, record_every))
    return self._result(problem, out, W, rounds, record_every, cost, batched=True,
                        metrics=metrics)
