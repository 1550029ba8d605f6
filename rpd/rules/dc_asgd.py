"""``dc:BASE`` / ``dc:LAMBDA:BASE``: delay compensation of the stale gradient (DC-ASGD).

DC-ASGD (Zheng et al., "Asynchronous Stochastic Gradient Descent with Delay Compensation",
ICML 2017) corrects a gradient taken at the stale point ``x_hat`` toward the gradient at the
current ``x`` with a first-order Taylor term whose Hessian is approximated by the diagonal
outer product of the gradient:

    g_DC = g + lambda * g * g * (x - x_hat)      (elementwise, per updated block),

``lambda >= 0`` (the paper's ``lambda_0``; default 0.04, the paper's CIFAR-10 setting).
Composes with any rule (``dc:pipedream``, ``dc:0.5:rpd``); program rules then keep each
microbatch's read point (``R * S * D`` more numbers) to form ``x - x_hat`` at the update.
"""
from __future__ import annotations

import dataclasses

from rpd.rules.base import Hook, HookReference
from rpd.rules.registry import Param, register_mitigation


@register_mitigation("dc", params=(Param("lam", float, 0.04, lo=0, meta="LAMBDA"),),
                     help="DC-ASGD delay compensation: g + LAMBDA g g (x - x_hat)",
                     examples=("dc:pipedream", "dc:0.5:rpd"))
@dataclasses.dataclass(frozen=True)
class DelayCompensation(Hook):
  """``g + lam * g * g * (x - x_hat)`` on the updated blocks (see the module docstring)."""

  lam: float = 0.04
  name: str = "dc"
  changes_grad: bool = True
  hyper = ("lam",)  # traced: a sweep over lambda is one compiled program

  def __post_init__(self):
    if not (isinstance(self.lam, (int, float)) and 0 <= self.lam < float("inf")):
      raise ValueError(f"dc lambda must be a finite number >= 0, got {self.lam!r}")

  def grad(self, state, g_rows, x_rows, xhat_rows, tau_rows):
    return g_rows + self.lam * g_rows * g_rows * (x_rows - xhat_rows)

  def reference(self, S, D):
    ref = HookReference()
    lam = float(self.lam)
    ref.grad = lambda g, x, point, tau, c, b: g + lam * g * g * (x - point)
    return ref
