"""``rpd``: Randomized PipeDream -- uniform block sampling with PipeDream's (or random) delays.

``rpd`` uses the steady-state PipeDream table of :mod:`rpd.theory.delay` (derived in closed form,
checked against the simulator); ``rpd:uniform:TAU`` draws every delay independently and
uniformly from ``{0, ..., TAU}`` at every iteration.
"""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from rpd.rules.base import (IDENTITY, Hook, IterationRule, check_S, frozen, keep_hook,
                            uniform_block)
from rpd.keys import select_key
from rpd.rules.registry import Param, register_rule
from rpd.rules.table import as_table


def pipedream_table(S: int) -> np.ndarray:
  """Steady-state PipeDream delay table ``tau[i][j]`` (0-based rows/columns), closed form.

  With 1-based ``i`` (updated block) and ``j`` (read block),

      tau[i][j] = S^2 + floor((S (1 - i - j) + i - 1) / 2),

  in integers (no sympy at run time). ``tests/test_protocol.py`` proves it equal
  to the sympy derivation :func:`rpd.theory.delay.tau_table` and to the simulator.
  """
  i = np.arange(1, S + 1)[:, None]
  j = np.arange(1, S + 1)[None, :]
  return (S * S + (S * (1 - i - j) + i - 1) // 2).astype(np.int64)


@register_rule("rpd", params=(Param("uniform_tau", int, None, lo=0, tag="uniform",
                                    meta="TAU"),),
               help="Randomized PipeDream: a uniform block, PipeDream's delay table (or "
                    "delays drawn uniformly from 0..TAU)",
               examples=("rpd", "rpd:uniform:5"))
@frozen
class RandomizedPipeDream(IterationRule):
  """RPD: ``i_k ~ U{0..S-1}``; block ``j`` of the read is ``x_j^{k - tau_kj}``.

  ``tau_kj = tau[i_k][j]`` from a table (default: steady-state PipeDream), or, when
  ``uniform_tau`` is set, ``tau_kj ~ U{0..uniform_tau}`` independently.

  Attributes:
    S: number of blocks.
    tau: delay table (nested tuples) or ``None`` with ``uniform_tau``.
    uniform_tau: maximum of the uniform delay distribution, or ``None``.
  """

  S: int
  tau: tuple | None = None
  uniform_tau: int | None = None
  name: str = "rpd"
  hook: Hook = IDENTITY

  def __post_init__(self):
    check_S(self.S)
    if self.uniform_tau is not None:
      if not isinstance(self.uniform_tau, int) or self.uniform_tau < 0:
        raise ValueError(f"delay must be an integer >= 0, got {self.uniform_tau!r}")
    else:
      table = pipedream_table(self.S) if self.tau is None else self.tau
      object.__setattr__(self, "tau", as_table(table, self.S))

  @property
  def tau_max(self) -> int:
    if self.uniform_tau is not None:
      return self.uniform_tau
    return max(max(row) for row in self.tau)

  def zero_delay(self) -> "RandomizedPipeDream":
    return keep_hook(self, RandomizedPipeDream(self.S, tau=np.zeros((self.S, self.S), np.int64)))

  def select(self, state, key, k):
    k_block, k_tau = jax.random.split(key)
    i = uniform_block(k_block, self.S)
    if self.uniform_tau is not None:
      tau = jax.random.randint(k_tau, (self.S,), 0, self.uniform_tau + 1, dtype=jnp.int32)
    else:
      tau = jnp.asarray(np.asarray(self.tau, np.int32))[i]
    return i, tau, state

  def reference_select(self, state, key, k):
    # documented draws: split(select_key(key, k)) -> (block key, delay key)
    k_block, k_tau = jax.random.split(select_key(key, k))
    i = int(jax.random.randint(k_block, (), 0, self.S, dtype=jnp.int32))
    if self.uniform_tau is None:
      return i, list(self.tau[i]), state
    tau = jax.random.randint(k_tau, (self.S,), 0, self.uniform_tau + 1, dtype=jnp.int32)
    return i, [int(t) for t in tau], state
