"""``predict:BASE``: weight prediction -- the stale read extrapolated by its staleness.

SpecTrain (Chen et al., "Efficient and Robust Parallel DNN Training through Model
Parallelism on Multi-GPU Platform", 2018) and PipeMare's weight prediction (Yang et al.,
"PipeMare: Asynchronous Pipeline Parallel DNN Training", MLSys 2021) take the gradient not
at the stashed weights but at a prediction of the weights the update will be applied to:

    x_pred_j = x_hat_j + h_j * v_j,

where ``h_j`` is the number of updates of block ``j`` between its read and the update the
gradient serves (``PipeDream``: ``h_j = S - 1 - j`` for stage ``j``, 0-based; an iteration
rule: the updates of ``j`` the read at delay ``tau_j`` missed) and ``v_j`` the most recent
update of block ``j`` (``x_j`` after minus before; SGD: ``-gamma g_j``), a one-step velocity.
Composes with any rule: ``predict:pipedream``, ``predict:rpd``, ``predict:schedule:NAME``.
It keeps ``S x D`` numbers (``v``) on top of the base rule's buffers.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

import numpy as np

from rpd.rules.base import Hook, HookReference
from rpd.rules.registry import register_mitigation


@register_mitigation("predict", help="weight prediction (SpecTrain): the read extrapolated by "
                                      "its staleness, x_hat_j + h_j v_j",
                     examples=("predict:pipedream", "predict:rpd"))
@dataclasses.dataclass(frozen=True)
class WeightPrediction(Hook):
  """``x_pred_j = x_hat_j + h_j v_j`` (see the module docstring); state ``v`` (``S_loc x D``)."""

  name: str = "predict"
  changes_read: bool = True
  observes: bool = True

  def init(self, x0):
    return jnp.zeros_like(x0)

  def read(self, v, xhat, h):
    return xhat + h.astype(xhat.dtype)[:, None] * v

  def observe(self, v, lbs, owned, delta_rows):
    dst = jnp.where(jnp.asarray(owned), lbs, v.shape[0])  # other devices' rows: dropped
    return v.at[dst].set(delta_rows, mode="drop")

  def buffer_floats(self, S, D):
    return S * D

  def reference(self, S, D):
    return _PredictReference(np.zeros((S, D)))


class _PredictReference(HookReference):
  """NumPy: read ``point + h v``, ``v_b`` the last update of block ``b`` (zero before)."""

  def __init__(self, v):
    self.v = v

  def read(self, point, h):
    return point + np.asarray(h, np.float64)[:, None] * self.v

  def observe(self, b, delta_row):
    self.v[b] = delta_row
