"""Simulated wall-clock time of PipeDream and LocalSGD on the same ``S`` devices.

The experiments compare methods by loss against *simulated* time, computed from an explicit
cost model (:class:`CostModel`, every parameter a field with a default). Times are in abstract
*units*; with the defaults one stage's forward of one microbatch costs 1 unit.

The model
---------
* The model is cut into ``S`` stages; stage ``s`` costs ``F_s`` (forward) and ``B_s``
  (backward) per microbatch. ``F`` and ``B`` are scalars (every stage alike, default 1) or
  length-``S`` sequences (layers of different cost).
* Device ``p`` (``p = 0..S-1``) has a slowdown factor ``speed[p]`` (default all 1; a sequence
  gives heterogeneous devices). In PipeDream device ``p`` hosts stage ``p``; in LocalSGD it
  hosts worker ``p``, which runs all ``S`` stages.
* Random compute times: with ``jitter = sigma > 0`` every compute time is multiplied by an
  independent mean-one lognormal factor ``exp(sigma z - sigma^2 / 2)``, ``z ~ N(0, 1)``,
  drawn from a numpy generator seeded by ``seed`` (reproducible).
* ``send_latency`` ``delta``: time for an activation / gradient to reach a neighbouring stage.
* LocalSGD averaging: a barrier (every worker waits for the slowest one) followed by an
  all-reduce costing ``allreduce_latency + d / bandwidth`` (``d`` parameters, ``bandwidth`` in
  parameters per unit; ``inf`` means free).

PipeDream (asynchronous 1F1B, weight stashing, no flush), ``n`` microbatches::

    T_PD(n) = fill + (n - 1) * period
    fill    = sum_s v_s (F_s + B_s) + 2 (S - 1) delta     (microbatch 0's round trip)
    period  = max_s v_s (F_s + B_s)                           (slowest stage, one F and one B)

with ``v_s = speed[s]``. Sends are assumed to overlap with compute in steady state (each stage
holds several microbatches in flight), so ``delta`` appears only in the fill. With jitter,
microbatch 0's round trip uses its own random times and each later microbatch adds
``max_s v_s (F_s eps_{m,s}^F + B_s eps_{m,s}^B)`` (the slowest stage of that slot; a
pessimistic bound for an asynchronous pipeline, which can absorb some jitter in its queues).
The list-scheduling simulator of :mod:`rpd.schedules` (:func:`pipedream_time_simulated`)
gives exactly ``T_PD(n)`` for equal stages and ``delta = 0``, and never more than ``T_PD(n)``
with heterogeneous stages (the slow stage need not lie on microbatch 0's path); with
``delta > 0`` its strict 1F1B order exposes the latency in every slot, which this model does
not.

LocalSGD, ``R`` rounds of ``H`` local steps (one microbatch per worker per local step)::

    T_LS(R, H) = sum_{r=1..R} [ max_p sum_{h=1..H} v_p sum_s (F_s eps^F + B_s eps^B)
                                + allreduce_latency + d / bandwidth ]

which without jitter is ``R * (H * max_p v_p * sum_s (F_s + B_s) + allreduce)``. No send
latency: each worker holds the whole model.

Throughput: with equal stages both methods process one microbatch per ``F + B`` units on
``S`` devices (PD one per period; LocalSGD ``S`` per ``S (F + B)``); PD pays the fill once,
LocalSGD pays the barrier and the all-reduce every ``H`` steps.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np


@dataclasses.dataclass(frozen=True)
class CostModel:
  """Every parameter of the simulated-time model (see the module docstring).

  Attributes:
    F: forward time of one stage for one microbatch (units); a scalar or one per stage.
    B: backward time of one stage for one microbatch; a scalar or one per stage.
    speed: per-device slowdown factors (length ``S``), ``None`` = all devices equal.
    jitter: lognormal sigma of the random compute-time factors (0 = deterministic).
    seed: seed of the jitter's random generator.
    send_latency: time to send an activation or a gradient to a neighbouring stage.
    allreduce_latency: fixed cost of one LocalSGD model average.
    bandwidth: parameters per unit time of the all-reduce (``inf`` = free).
  """

  F: float | Sequence[float] = 1.0
  B: float | Sequence[float] = 1.0
  speed: Sequence[float] | None = None
  jitter: float = 0.0
  seed: int = 0
  send_latency: float = 0.0
  allreduce_latency: float = 0.0
  bandwidth: float = math.inf

  def __post_init__(self):
    for name in ("jitter", "send_latency", "allreduce_latency"):
      v = getattr(self, name)
      if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"CostModel.{name} must be finite and >= 0, got {v}")
    if not self.bandwidth > 0:
      raise ValueError(f"CostModel.bandwidth must be > 0, got {self.bandwidth}")

  def stage_FB(self, S: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-stage ``(F_s, B_s)`` arrays of length ``S``."""
    out = []
    for name in ("F", "B"):
      v = np.asarray(getattr(self, name), dtype=float)
      v = np.full(S, float(v)) if v.ndim == 0 else v
      if v.shape != (S,) or np.any(v <= 0):
        raise ValueError(f"CostModel.{name} must be a positive scalar or {S} positive values")
      out.append(v)
    return out[0], out[1]

  def device_speed(self, S: int) -> np.ndarray:
    """Per-device slowdown factors ``v_p`` (length ``S``)."""
    if self.speed is None:
      return np.ones(S)
    v = np.asarray(self.speed, dtype=float)
    if v.shape != (S,) or np.any(v <= 0):
      raise ValueError(f"CostModel.speed must hold {S} positive values, got {self.speed}")
    return v

  def allreduce_time(self, d: int) -> float:
    """One all-reduce of ``d`` parameters: ``allreduce_latency + d / bandwidth``."""
    return self.allreduce_latency + (0.0 if math.isinf(self.bandwidth) else d / self.bandwidth)

  def _eps(self, rng: np.random.Generator, shape) -> np.ndarray:
    """Mean-one lognormal factors (ones without jitter)."""
    if self.jitter == 0:
      return np.ones(shape)
    s = self.jitter
    return np.exp(s * rng.standard_normal(shape) - s * s / 2)


def pipedream_times(n: int, S: int, cm: CostModel = CostModel()) -> np.ndarray:
  """Completion time of each of ``n`` microbatches of PipeDream: ``T_PD(1..n)``.

  Args:
    n: number of microbatches (``>= 0``).
    S: number of stages = devices.
    cm: the cost model.

  Returns:
    float array of length ``n``; entry ``m`` is ``fill + sum_{m' = 1..m} period_{m'}``.
  """
  F, B = cm.stage_FB(S)
  v = cm.device_speed(S)
  if n == 0:
    return np.zeros(0)
  rng = np.random.default_rng(cm.seed)
  eF, eB = cm._eps(rng, (n, S)), cm._eps(rng, (n, S))
  stage_m_S = v * (F * eF + B * eB)  # (n, S): compute of microbatch m on stage s
  fill = stage_m_S[0].sum() + 2 * (S - 1) * cm.send_latency
  period_m = stage_m_S[1:].max(axis=1)
  return fill + np.concatenate([[0.0], np.cumsum(period_m)])


def pipedream_time(n: int, S: int, cm: CostModel = CostModel()) -> float:
  """``T_PD(n)``: time for PipeDream to finish ``n`` microbatches (0 for ``n = 0``)."""
  return float(pipedream_times(n, S, cm)[-1]) if n > 0 else 0.0


def pipedream_time_simulated(n: int, S: int, cm: CostModel = CostModel()) -> float:
  """``T_PD(n)`` from the list-scheduling simulator of :mod:`rpd.schedules` (strict 1F1B order).

  Used to check the closed form; supports ``F``, ``B``, ``speed`` and ``send_latency`` but not
  ``jitter``.
  """
  from rpd.schedules import get_schedule
  if cm.jitter:
    raise ValueError("the schedule simulator has no random compute times")
  F, B = cm.stage_FB(S)
  v = cm.device_speed(S)
  timed = get_schedule("pipedream").timed(
      S, n, durations={"F": list(v * F), "B": list(v * B)}, latency=cm.send_latency)
  return float(timed.makespan)


def schedule_durations(schedule, S: int, cm: CostModel = CostModel()) -> dict:
  """Per-block durations of ``schedule``'s timing pass under the cost model (no jitter).

  Stage ``s`` on device ``s``: ``F = v_s F_s``; the backward ``v_s B_s`` runs as one ``B``,
  or, for schedules that split it (zero-bubble), as ``B = W = v_s B_s / 2``.
  """
  if cm.jitter:
    raise ValueError("the schedule simulator has no random compute times")
  F, B = cm.stage_FB(S)
  v = cm.device_speed(S)
  if schedule.split_backward:
    return {"F": list(v * F), "B": list(v * B / 2), "W": list(v * B / 2)}
  return {"F": list(v * F), "B": list(v * B)}


def schedule_time_per_microbatch(name: str, S: int,
                                 cm: CostModel = CostModel()) -> tuple[float, float]:
  """``(fill, period)``: the engine's run of ``n`` microbatches under schedule ``name``
  (``P = S``, one chunk per device) takes ``fill + n * period`` simulated units.

  The single cost model of ``rpd train``'s ``sim_time`` and of the experiments: for
  ``pipedream`` it equals :func:`pipedream_time` (``fill + n period = T_PD(n)``, tested).

  * asynchronous schedules (no flush): the steady-state period
    ``(makespan(2M) - makespan(M)) / M`` after a fill ``makespan(M) - M * period``;
  * flushing schedules train in the engine with one microbatch per synchronous update, so
    each update costs a whole fill-drain, ``makespan(P, 1)``.

  Raises:
    ValueError (``ScheduleNotApplicable``): if the schedule does not apply with one chunk.
    KeyError: unknown schedule.
  """
  from rpd.schedules import get_schedule
  sched = get_schedule(name)
  dur = schedule_durations(sched, S, cm)
  if sched.semantics.synchronous:
    sched.check(S, 1, 1)
    return 0.0, float(sched.timed(S, 1, 1, dur, cm.send_latency).makespan)
  M = sched.steady_state_microbatches(S, 1)
  sched.check(S, M, 1)
  sched.check(S, 2 * M, 1)
  t1 = sched.timed(S, M, 1, dur, cm.send_latency).makespan
  t2 = sched.timed(S, 2 * M, 1, dur, cm.send_latency).makespan
  period = (t2 - t1) / M
  return float(t1 - M * period), float(period)


def rule_time_per_microbatch(rule, cm: CostModel = CostModel()):
  """``(fill, period)`` of :func:`schedule_time_per_microbatch` for the schedule a rule
  trains under (``rule.schedule_name``: ``pipedream``, ``schedule:NAME``, ``2bw``, and any
  mitigation on them), or ``None`` for a rule without one or a schedule that does not apply
  with one chunk per device."""
  name = rule.schedule_name
  if name is None:
    return None
  try:
    return schedule_time_per_microbatch(name, rule.S, cm)
  except ValueError:
    return None


def localsgd_round_times(R: int, H: int, S: int, d: int,
                         cm: CostModel = CostModel()) -> np.ndarray:
  """End time of each of ``R`` LocalSGD rounds (``H`` local steps + barrier + all-reduce).

  Args:
    R: number of rounds (averagings).
    H: local steps per round.
    S: number of workers = devices (each runs all ``S`` stages).
    d: number of parameters (all-reduce size).
    cm: the cost model.

  Returns:
    float array of length ``R``: ``T_LS(1..R, H)``.
  """
  F, B = cm.stage_FB(S)
  v = cm.device_speed(S)
  if R == 0:
    return np.zeros(0)
  rng = np.random.default_rng(cm.seed + 1)
  if cm.jitter == 0:
    per_round = H * float(np.max(v * np.sum(F + B))) * np.ones(R)
  else:
    eF, eB = cm._eps(rng, (R, S, H, S)), cm._eps(rng, (R, S, H, S))  # round, worker, step, stage
    work_R_P = (v[None, :, None, None] * (F * eF + B * eB)).sum(axis=(2, 3))
    per_round = work_R_P.max(axis=1)  # barrier: the slowest worker
  return np.cumsum(per_round + cm.allreduce_time(d))


def localsgd_time(R: int, H: int, S: int, d: int, cm: CostModel = CostModel()) -> float:
  """``T_LS(R, H)``: time for ``R`` rounds of ``H`` local steps on ``S`` workers."""
  return float(localsgd_round_times(R, H, S, d, cm)[-1]) if R > 0 else 0.0


def cost_model_from_dict(spec: dict | None) -> CostModel:
  """A :class:`CostModel` from a plain dict (config files, JSON); unknown keys raise."""
  spec = dict(spec or {})
  names = {f.name for f in dataclasses.fields(CostModel)}
  bad = sorted(set(spec) - names)
  if bad:
    raise ValueError(f"unknown cost-model field(s) {bad}; known: {sorted(names)}")
  return CostModel(**spec)
