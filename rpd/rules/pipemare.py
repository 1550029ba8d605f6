"""``pipemare:BASE`` / ``pipemare:WARMUP:BASE``: PipeMare's two corrections on any rule.

PipeMare (Yang, Zhang, Li, Re, Aberger, De Sa, "PipeMare: Asynchronous Pipeline Parallel DNN
Training", MLSys 2021) runs a pipeline without flushes and corrects for its delays with

* T1, learning-rate rescheduling (a warm-up per stage): stage ``i`` with delay ``tau_i``
  steps with ``alpha_{k,i} = alpha_k * tau_i^{-p_k}``, ``p_k = 1 - min(k / K_w, 1)``: at the
  start the step is divided by the delay, and the division fades out linearly over ``K_w``
  iterations;
* T2, discrepancy correction: an exponential moving average of each stage's weight updates,
  ``delta_{k+1} = d * delta_k + (1 - d) (w_{k+1} - w_k)``, extrapolates stale weights
  forward: ``w_stale - (tau_stale - tau_target) * delta``.

(These are the paper's T1 and T2 as recalled here; the equation numbers were not checked
against the paper in this session.) PipeMare has no weight stashing, so the paper applies T2
to the backward weights, to bring them to the forward weights. rpd's model takes one exact
gradient at one read point per microbatch, so there is no forward/backward discrepancy; T2 is
applied where rpd's staleness lies, to the read point, extrapolated over the versions it
misses (as :mod:`rpd.rules.predict`, with the EMA ``delta`` in place of the last update):

    x_pred_j = x_hat_j + h_j * delta_j,
    delta_j <- d * delta_j + (1 - d) * (x_j^new - x_j^old)     after each update of block j,
    g_i <- g_i * (1 + tau_k)^{-p_c},   p_c = 1 - min(c / K_w, 1),

with ``h_j`` the updates of block ``j`` between the read and the update (as in ``predict``),
``tau_k`` the update's delay in gradients (``max_j tau_ij``, divided by ``S`` for program
rules, as in :mod:`rpd.rules.adaptive`; ``1 + tau`` so fresh updates keep their step) and ``c`` the number of block updates before
this one (counted by the hook). ``K_w = 0`` (the default, ``pipemare:BASE``) switches T1 off;
``pipemare:WARMUP:BASE`` sets ``K_w = WARMUP`` iterations. ``d = 0`` is ``predict``.

Arguments: ``warmup`` (``K_w``, integer >= 0), ``decay`` (``d`` in ``[0, 1)``; 0.5 here, not
tuned). State: ``delta`` (``S_loc x D``) and the update counter ``c``.
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

import numpy as np

from rpd.rules.base import Hook, HookReference
from rpd.rules.registry import Param, register_mitigation


class PipeMareState(NamedTuple):
  """``delta``: EMA of each local block's updates (``S_loc x D``); ``c``: updates so far."""

  delta: jax.Array
  c: jax.Array


@register_mitigation("pipemare", params=(Param("warmup", int, 0, lo=0, meta="WARMUP"),
                                         Param("decay", float, 0.5, lo=0, hi=1,
                                               meta="DECAY")),
                     help="PipeMare: read extrapolated by the EMA (DECAY) of each block's "
                          "updates, and a step warm-up over WARMUP iterations",
                     examples=("pipemare:pipedream", "pipemare:20:rpd"))
@dataclasses.dataclass(frozen=True)
class PipeMare(Hook):
  """PipeMare's T1 warm-up and T2 EMA extrapolation (see the module docstring).

  Attributes:
    warmup: ``K_w``, iterations of the step-size warm-up (0: no warm-up).
    decay: ``d``, the EMA's decay.
    unit: block updates per gradient of the base rule (as :class:`DelayAdaptive`).
  """

  warmup: int = 0
  decay: float = 0.5
  unit: int = 1
  name: str = "pipemare"
  changes_read: bool = True
  changes_grad: bool = True
  observes: bool = True
  hyper = ("decay",)  # traced: a sweep over the decay is one compiled program

  def __post_init__(self):
    if not isinstance(self.warmup, int) or isinstance(self.warmup, bool) or self.warmup < 0:
      raise ValueError(f"pipemare warm-up must be an integer >= 0, got {self.warmup!r}")
    if not (isinstance(self.decay, (int, float)) and 0 <= self.decay < 1):
      raise ValueError(f"pipemare decay must be a number in [0, 1), got {self.decay!r}")

  def init(self, x0):
    return PipeMareState(jnp.zeros_like(x0), jnp.zeros((), jnp.int32))

  def read(self, state, xhat, h):
    return xhat + h.astype(xhat.dtype)[:, None] * state.delta

  def grad(self, state, g_rows, x_rows, xhat_rows, tau_rows):
    if not self.warmup:
      return g_rows
    c = state.c + jnp.arange(g_rows.shape[0], dtype=jnp.int32)  # rows go in time order
    p = 1.0 - jnp.minimum(c.astype(g_rows.dtype) / self.warmup, 1.0)
    tau = (jnp.max(tau_rows, axis=-1) // self.unit).astype(g_rows.dtype)
    return g_rows * jnp.power(1.0 + tau, -p)[:, None]

  def observe(self, state, lbs, owned, delta_rows):
    d = jnp.asarray(self.decay, delta_rows.dtype)
    new = d * state.delta[lbs] + (1 - d) * delta_rows
    dst = jnp.where(jnp.asarray(owned), lbs, state.delta.shape[0])  # others' rows: dropped
    return PipeMareState(state.delta.at[dst].set(new, mode="drop"),
                         state.c + jnp.asarray(lbs).shape[0])

  def buffer_floats(self, S, D):
    return S * D

  def reference(self, S, D):
    return _PipeMareReference(self, np.zeros((S, D)))


class _PipeMareReference(HookReference):
  """NumPy: read ``point + h delta`` (``delta``: EMA of block updates, decay ``d``); step
  ``g (1 + tau)^-(1 - min(c / K_w, 1))``, ``tau`` in gradients (T1 only with ``K_w > 0``)."""

  def __init__(self, hook, delta):
    self.hook, self.delta = hook, delta

  def read(self, point, h):
    return point + np.asarray(h, np.float64)[:, None] * self.delta

  def grad(self, g, x, point, tau, c, b):
    if not self.hook.warmup:
      return g
    p = 1.0 - min(c / self.hook.warmup, 1.0)
    return g * (1.0 + max(tau) // self.hook.unit) ** -p

  def observe(self, b, delta_row):
    d = self.hook.decay
    self.delta[b] = d * self.delta[b] + (1 - d) * delta_row
