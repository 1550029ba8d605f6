"""``2bw`` / ``2bw:LAG``: PipeDream-2BW's double-buffered weights, one version stale.

PipeDream-2BW (Narayanan, Phanishayee, Shi, Chen, Zaharia, "Memory-Efficient
Pipeline-Parallel DNN Training", ICML 2021) keeps two versions of the weights per stage
instead of PipeDream's stash of up to ``S``: every microbatch of a batch reads the same
version, and the gradient of version ``t - 1`` updates version ``t`` (the paper's update
``W^{(t+1)} = W^{(t)} - nu * grad f(W^{(t-1)})``: a delay of exactly one version on every
stage, whatever ``S``), next to PipeDream's per-stage delays of ``S - 1 - i`` versions.

As an iteration rule: round ``r`` updates the blocks ``0, 1, ..., S-1`` in turn (iterations
``k = r S + i``), all with a gradient at the version ``LAG`` rounds back,

    i_k = k mod S,    x_hat^k = x^{(r - LAG) S}    (tau_kj = (k mod S) + LAG * S, all j),

with ``x^t = x^0`` for ``t < 0`` (2BW's ``W^{(-1)} = W^{(0)}``), so on exact gradients a round
is ``x^{(r+1) S} = x^{r S} - gamma grad f(x^{(r - 1) S})``. ``LAG = 1`` is 2BW; ``tau_max =
(LAG + 1) S - 1``. Differences from the system: one sample per block update (2BW takes one
accumulated gradient of ``m`` microbatches per version; on exact gradients they coincide),
and the zero-delay form is cyclic block SGD (all ``tau = 0``), the common suite's reference.
Keeps the undo log of the iteration family (``tau_max * D`` numbers; the system needs ``2 D``).
"""
from __future__ import annotations

import jax.numpy as jnp

from rpd.rules.base import IDENTITY, Hook, IterationRule, check_S, frozen, keep_hook
from rpd.rules.registry import Param, register_rule


@register_rule("2bw", params=(Param("lag", int, 1, lo=0, meta="LAG"),),
               help="PipeDream-2BW double-buffered weights: cyclic blocks, every read LAG "
                    "versions (rounds of S updates) stale", examples=("2bw", "2bw:2"))
@frozen
class DoubleBuffered(IterationRule):
  """Cyclic blocks, every read ``LAG`` versions (rounds of ``S`` updates) stale.

  Attributes:
    S: number of blocks.
    lag: versions of staleness (1: PipeDream-2BW); ``-1`` marks the zero-delay form.
  """

  S: int
  lag: int = 1
  name: str = "2bw"
  hook: Hook = IDENTITY

  def __post_init__(self):
    check_S(self.S)
    if not isinstance(self.lag, int) or isinstance(self.lag, bool) or self.lag < -1:
      raise ValueError(f"2bw lag must be an integer >= 0, got {self.lag!r}")

  @property
  def schedule_name(self):
    """PipeDream-2BW's schedule (``LAG = 1`` only)."""
    return "pipedream-2bw" if self.lag == 1 else None

  @property
  def tau_max(self) -> int:
    return 0 if self.lag == -1 else (self.lag + 1) * self.S - 1

  def zero_delay(self) -> "DoubleBuffered":
    return keep_hook(self, DoubleBuffered(self.S, -1, "2bw@zero-delay"))

  def select(self, state, key, k):
    i = (k % self.S).astype(jnp.int32)
    if self.lag == -1:
      return i, jnp.zeros((self.S,), jnp.int32), state
    return i, jnp.full((self.S,), i + self.lag * self.S, jnp.int32), state

  def reference_select(self, state, key, k):
    """From the definition: round ``r = k // S`` updates block ``k mod S`` with a gradient
    at the iterate that started round ``r - LAG`` (iteration ``(r - LAG) S``)."""
    r, i = divmod(k, self.S)
    k_read = k if self.lag == -1 else (r - self.lag) * self.S
    return i, [k - k_read] * self.S, state
