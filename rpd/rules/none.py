"""``none``: plain block SGD, a uniformly drawn block and no staleness."""
from __future__ import annotations

import jax.numpy as jnp

from rpd.rules.base import (IDENTITY, Hook, IterationRule, check_S, frozen,
                            reference_uniform_block, uniform_block)
from rpd.rules.registry import register_rule


@register_rule("none", help="plain block SGD: a uniform block, no staleness")
@frozen
class NoDelay(IterationRule):
  """``x_{i_k} <- x_{i_k} - gamma g_{i_k}(x^k)``, ``i_k ~ U{0..S-1}``: plain block SGD.

  Attributes:
    S: number of blocks.
  """

  S: int
  name: str = "none"
  hook: Hook = IDENTITY

  def __post_init__(self):
    check_S(self.S)

  @property
  def tau_max(self) -> int:
    return 0

  def zero_delay(self) -> "NoDelay":
    return self

  def select(self, state, key, k):
    return uniform_block(key, self.S), jnp.zeros((self.S,), jnp.int32), state

  def reference_select(self, state, key, k):
    return reference_uniform_block(key, k, self.S), [0] * self.S, state
