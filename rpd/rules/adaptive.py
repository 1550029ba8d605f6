"""``adapt:BASE`` / ``adapt:inv:BASE``: delay-adaptive step sizes on the stale updates.

The delay-adaptive asynchronous SGD literature shrinks the step of an update by its delay:
Mishchenko, Bach, Even, Woodworth, "Asynchronous SGD Beats Minibatch SGD Under Arbitrary
Delays" (NeurIPS 2022) and Koloskova, Stich, Jaggi, "Sharper Convergence Guarantees for
Asynchronous SGD for Distributed and Federated Learning" (NeurIPS 2022) analyse steps that
decrease with the delay ``tau`` of the gradient being applied, so that an old gradient moves
the iterate less. This hook implements the two simple forms

    gamma_k = gamma / (1 + tau_k)             (mode ``1p``, the default: ``adapt:BASE``)
    gamma_k = gamma / max(tau_k, 1)           (mode ``inv``: ``adapt:inv:BASE``; fresh
                                               updates keep ``gamma``)

by scaling the gradient row of the updated block before the optimizer:
``g_i <- g_i / (1 + tau_k)``; with the engine's plain SGD (``--optimizer sgd``) this is exactly
the step ``gamma_k``; with momentum or Adam it scales the optimizer's input instead.

Which ``tau``. Block ``i`` is updated at iteration ``k`` with a gradient taken at ``x_hat``,
``x_hat_j = x_j^{k - tau_ij}``: a delay per block. We use ``tau_k = max_j tau_ij``, the age of
the oldest block read: ``x - x_hat`` is made of the block updates of the last ``max_j tau_ij``
iterations only, so ``|g_i(x) - g_i(x_hat)| <= L sum_{t = k - max_j tau_ij}^{k-1}
|x^{t+1} - x^t|``, the quantity the analyses above control with the delay ``tau_k``. The
own-block delay ``tau_ii`` would ignore the coupling through the off-diagonal Hessian (the
last PipeDream stage reads its own block fresh, ``h = 0`` versions, but the other blocks
``S - 1 .. 3(S - 1)`` iterations old). As in the papers, ``tau`` counts *gradients* applied
since the read: an iteration rule applies one (block) gradient per iteration, so ``tau`` is
in iterations; a program rule applies each microbatch's gradient as ``S`` block updates, so
``tau = floor(max_j tau_ij / S)`` with ``tau_ij`` in iterations (its zero-delay form, plain
synchronous SGD, reads at the period start, ``tau_ij <= S - 1``, and keeps ``gamma``). For
program rules (``adapt:pipedream``) ``tau_ij`` is the program's steady-state delay table;
for iteration rules (``adapt:rpd``) the delays the rule drew for the iteration.
Composes with any rule; keeps no state.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from rpd.rules.base import Hook, HookReference
from rpd.rules.registry import Param, register_mitigation

MODES = ("1p", "inv")


@register_mitigation("adapt", params=(Param("mode", MODES, "1p", meta="MODE"),),
                     help="delay-adaptive step gamma/(1+tau) (1p) or gamma/max(tau,1) (inv), "
                          "tau = max_j tau_ij in gradients",
                     examples=("adapt:pipedream", "adapt:inv:rpd", "adapt:2bw",
                               "adapt:predict:dc:0.5:rpd"))
@dataclasses.dataclass(frozen=True)
class DelayAdaptive(Hook):
  """``g_i / (1 + max_j tau_ij)`` (``1p``) or ``g_i / max(max_j tau_ij, 1)`` (``inv``).

  Attributes:
    mode: ``"1p"`` or ``"inv"`` (see the module docstring).
    unit: block updates per gradient of the base rule (``S`` for program rules, 1 for
      iteration rules); delays are counted in gradients, ``tau // unit``.
  """

  mode: str = "1p"
  unit: int = 1
  name: str = "adapt"
  changes_grad: bool = True

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"unknown adapt mode {self.mode!r}; use adapt:BASE or adapt:inv:BASE")

  def scale(self, tau_rows, dtype=jnp.float32):
    """The step factor of each row: ``1 / (1 + tau)`` or ``1 / max(tau, 1)``, ``tau = max_j``."""
    tau = jnp.max(tau_rows, axis=-1) // self.unit
    den = 1 + tau if self.mode == "1p" else jnp.maximum(tau, 1)
    return 1.0 / den.astype(dtype)

  def grad(self, state, g_rows, x_rows, xhat_rows, tau_rows):
    return g_rows * self.scale(tau_rows, g_rows.dtype)[:, None]

  def reference(self, S, D):
    ref = HookReference()

    def grad(g, x, point, tau, c, b):
      gradients = max(tau) // self.unit  # delay in gradients
      return g / (1 + gradients) if self.mode == "1p" else g / max(gradients, 1)
    ref.grad = grad
    return ref
