"""``constant:TAU``: uniform block, every block read exactly ``TAU`` iterations stale."""
from __future__ import annotations

import jax.numpy as jnp

from rpd.rules.base import (IDENTITY, Hook, IterationRule, check_S, frozen, keep_hook,
                            reference_uniform_block, uniform_block)
from rpd.rules.registry import Param, register_rule


@register_rule("constant", params=(Param("tau", int, lo=0, meta="TAU"),),
               help="a uniform block, every block read exactly TAU iterations stale",
               examples=("constant:3",))
@frozen
class ConstantDelay(IterationRule):
  """``x_{i_k} <- x_{i_k} - gamma g_{i_k}(x^{k - tau})`` with ``i_k ~ U{0..S-1}``.

  With ``S = 1`` this is delayed gradient descent ``x_{k+1} = x_k - gamma g(x_{k - tau})``
  (``x_t = x_0`` for ``t < 0``).

  Attributes:
    S: number of blocks.
    tau: the delay (integer >= 0).
  """

  S: int
  tau: int
  name: str = "constant"
  hook: Hook = IDENTITY

  def __post_init__(self):
    check_S(self.S)
    if not isinstance(self.tau, int) or self.tau < 0:
      raise ValueError(f"delay must be an integer >= 0, got {self.tau!r}")

  @property
  def tau_max(self) -> int:
    return self.tau

  def zero_delay(self) -> "ConstantDelay":
    return keep_hook(self, ConstantDelay(self.S, 0))

  def select(self, state, key, k):
    return uniform_block(key, self.S), jnp.full((self.S,), self.tau, jnp.int32), state

  def reference_select(self, state, key, k):
    return reference_uniform_block(key, k, self.S), [self.tau] * self.S, state
