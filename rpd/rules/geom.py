"""``geom:P:TAU``: a stale cache whose per-block ages reset with probability ``P``.

A stateful iteration rule (the example a new user wrote from the README): each block's copy
in a cache ages by one iteration per iteration and is refreshed with probability ``P``,
independently per block; its age is capped at ``TAU``. Iteration ``k`` updates a uniformly
drawn block with the gradient at the cached copies:

    a_j^k = 0 with probability P, else min(a_j^{k-1} + 1, TAU)   (a_j^{-1} = 0),
    i_k ~ U{0..S-1},   x_hat^k_j = x_j^{k - a_j^k},

so the delays are geometric with parameter ``P``, capped at ``TAU``. The ages are the rule's
state (an ``(S,)`` int32 array); a rule that forgot them would read fresh copies only.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from rpd.keys import select_key
from rpd.rules.base import IDENTITY, Hook, IterationRule, check_S, frozen, keep_hook
from rpd.rules.registry import Param, register_rule


@register_rule("geom", params=(Param("p", float, lo=0, hi=1, hi_closed=True, meta="P"),
                               Param("tau", int, lo=0, meta="TAU")),
               help="a stale cache: each block's age resets with probability P, else grows "
                    "by one, capped at TAU (geometric delays; a stateful rule)",
               examples=("geom:0.3:6", "predict:geom:0.5:3"))
@frozen
class GeometricAge(IterationRule):
  """Per-block ages reset with probability ``p``, capped at ``tau`` (module docstring).

  Attributes:
    S: number of blocks.
    p: reset probability in ``[0, 1]``.
    tau: the cap (integer >= 0).
  """

  S: int
  p: float
  tau: int
  name: str = "geom"
  hook: Hook = IDENTITY

  def __post_init__(self):
    check_S(self.S)
    if not 0 <= self.p <= 1:
      raise ValueError(f"geom reset probability must be in [0, 1], got {self.p!r}")
    if not isinstance(self.tau, int) or self.tau < 0:
      raise ValueError(f"delay must be an integer >= 0, got {self.tau!r}")

  @property
  def tau_max(self) -> int:
    return self.tau

  def zero_delay(self) -> "GeometricAge":
    return keep_hook(self, GeometricAge(self.S, self.p, 0, f"{self.name}@zero-delay"))

  def init_state(self):
    return jnp.zeros((self.S,), jnp.int32)

  def select(self, ages, key, k):
    k_block, k_reset = jax.random.split(key)
    i = jax.random.randint(k_block, (), 0, self.S, dtype=jnp.int32)
    reset = jax.random.uniform(k_reset, (self.S,)) < self.p
    ages = jnp.where(reset, 0, jnp.minimum(ages + 1, self.tau)).astype(jnp.int32)
    return i, ages, ages

  def reference_init(self):
    return [0] * self.S

  def reference_select(self, ages, key, k):
    # documented draws: split(select_key(key, k)) -> (block key, reset key)
    k_block, k_reset = jax.random.split(select_key(key, k))
    i = int(jax.random.randint(k_block, (), 0, self.S, dtype=jnp.int32))
    u = [float(v) for v in jax.random.uniform(k_reset, (self.S,))]
    ages = [0 if u[j] < self.p else min(ages[j] + 1, self.tau) for j in range(self.S)]
    return i, ages, ages
