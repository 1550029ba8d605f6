"""``table``: a per-block delay table ``tau[i][j]`` with a cyclic or uniform block order."""
from __future__ import annotations

import numpy as np
import jax
import jax.numpy as jnp

from rpd.rules.base import (IDENTITY, Hook, IterationRule, check_S, frozen, keep_hook,
                            reference_uniform_block, uniform_block)
from rpd.rules.registry import Param, register_rule


def as_table(tau, S: int) -> tuple[tuple[int, ...], ...]:
  """Validate an ``S x S`` table of non-negative integers and return it as nested tuples.

  Raises:
    ValueError: naming the bad shape or entry.
  """
  arr = np.asarray(tau)
  if arr.dtype == np.bool_:
    raise ValueError("delay table entries must be integers, got a boolean array")
  if arr.shape != (S, S):
    raise ValueError(f"delay table must have shape ({S}, {S}), got {arr.shape}")
  if not np.issubdtype(arr.dtype, np.integer):
    if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
      raise ValueError("delay table entries must be integers")
  arr = arr.astype(np.int64)
  if arr.max(initial=0) > 2 ** 31 - 1:
    raise ValueError(f"delay table entry {int(arr.max())} is too large (at most {2 ** 31 - 1})")
  if arr.min(initial=0) < 0:
    raise ValueError(f"delay table entries must be >= 0, got {int(arr.min())}")
  return tuple(tuple(int(v) for v in row) for row in arr)


@frozen
class TableDelay(IterationRule):
  """Block ``i_k`` reads block ``j`` as it was ``tau[i_k][j]`` iterations ago.

  ``i_k = k mod S`` (``order="cyclic"``, a round-robin like a pipeline's) or
  ``i_k ~ U{0..S-1}`` (``order="uniform"``, as in Randomized PipeDream).

  Attributes:
    S: number of blocks.
    tau: the table as nested tuples (rows: updated block, columns: read block).
    order: ``"cyclic"`` or ``"uniform"``.
  """

  S: int
  tau: tuple
  order: str = "cyclic"
  name: str = "table"
  hook: Hook = IDENTITY
  timing: str | None = None  # the schedule whose forward delays the table is

  def __post_init__(self):
    check_S(self.S)
    object.__setattr__(self, "tau", as_table(self.tau, self.S))
    if self.order not in ("cyclic", "uniform"):
      raise ValueError(f"order must be 'cyclic' or 'uniform', got {self.order!r}")

  @property
  def tau_max(self) -> int:
    return max(max(row) for row in self.tau)

  def zero_delay(self) -> "TableDelay":
    return keep_hook(self, TableDelay(self.S, np.zeros((self.S, self.S), np.int64), self.order,
                                      self.name, timing=self.timing))

  def select(self, state, key, k):
    if self.order == "cyclic":
      i = (k % self.S).astype(jnp.int32)
    else:
      i = uniform_block(key, self.S)
    table = jnp.asarray(np.asarray(self.tau, np.int32))
    return i, table[i], state

  def reference_select(self, state, key, k):
    i = k % self.S if self.order == "cyclic" else reference_uniform_block(key, k, self.S)
    return i, list(self.tau[i]), state


@register_rule("table", params=(Param("file", str, meta="FILE.npy"),),
               help="block k mod S reads block j as it was tau[i][j] iterations ago, tau an "
                    "S x S integer table from a .npy file", examples=("table:{table}",))
def table_from_file(S: int, file: str) -> TableDelay:
  """``table:FILE.npy``: the cyclic table rule of an ``S x S`` integer array in ``file``."""
  from rpd.io import load_array
  tau = load_array(file, "delay table", ndim=2, kind="i")  # InputError: one line
  return TableDelay(S, tau, "cyclic", f"table:{file}")
