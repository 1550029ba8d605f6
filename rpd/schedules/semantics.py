"""Update semantics of a pipeline schedule, as behaviour rather than a string to compare.

A schedule's semantics says *when* an update lands and *which weights* a microbatch's forward
and backward read:

* :data:`SYNC_FLUSH`: the M microbatch gradients of a batch are accumulated and one synchronous
  update per block follows the flush (no staleness: ``tau = 0``).
* :data:`ASYNC_STASH`: a block is updated as soon as its backward ends; the backward reads the
  weights its forward read (weight stashing; PipeDream).
* :data:`ASYNC_NOSTASH`: as before, but the backward reads the *current* weights (no stash;
  PipeMare), so forward and backward see different versions.
* :data:`DOUBLE_BUFFERED`: two weight versions; a batch's updates are accumulated and land one
  batch later (PipeDream-2BW: ``W^(t+1) = W^(t) - nu grad f(W^(t-1))``).

Code asks a semantics what it does (``sem.synchronous``, ``sem.stashes``, ...); only ``name``
is a string, and it is used for output (JSON, tables), never for control flow.
"""
from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Semantics:
  """How and when a schedule's updates land (see the module docstring).

  Attributes:
    name: the name printed in tables and JSON (``"sync_flush"``, ...).
    synchronous: gradients of a batch are accumulated; one update per block per flush.
    stashes: the backward of a microbatch reads the weights its forward read.
    double_buffered: updates land one batch late, two versions kept (2BW).
  """

  name: str
  synchronous: bool
  stashes: bool
  double_buffered: bool = False

  @property
  def asynchronous(self) -> bool:
    """A block is updated after each microbatch's backward (no flush): delays are nonzero."""
    return not self.synchronous and not self.double_buffered

  @property
  def split_reads(self) -> bool:
    """Forward and backward may read different versions (no stash, asynchronous)."""
    return self.asynchronous and not self.stashes

  def __str__(self) -> str:
    return self.name


SYNC_FLUSH = Semantics("sync_flush", synchronous=True, stashes=True)
ASYNC_STASH = Semantics("async_stash", synchronous=False, stashes=True)
ASYNC_NOSTASH = Semantics("async_nostash", synchronous=False, stashes=False)
DOUBLE_BUFFERED = Semantics("double_buffered", synchronous=False, stashes=True,
                            double_buffered=True)

#: every semantics, by name (for output, listing and tests).
ALL = {s.name: s for s in (SYNC_FLUSH, ASYNC_STASH, ASYNC_NOSTASH, DOUBLE_BUFFERED)}
