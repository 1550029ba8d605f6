"""``pipedream``: steady-state PipeDream (asynchronous 1F1B, weight stashing, no flush)."""
from __future__ import annotations

import abc

from rpd.rules.base import Rule, check_S, frozen
from rpd.rules.program import Program, schedule_program, zero_delay_program


class ProgramRule(Rule):
  """A rule given by a periodic event program (:mod:`rpd.rules.program`).

  Subclasses implement :meth:`program`. One engine step runs one period: ``q`` stochastic
  gradients (one per microbatch, at the point the microbatch read) and ``q * S`` block
  updates, so ``K`` must be a multiple of ``q * S``.
  """

  @abc.abstractmethod
  def program(self) -> Program:
    """The steady-state event program this rule runs."""

  @property
  def tau_max(self) -> int:
    return self.program().tau_max

  @property
  def updates_per_step(self) -> int:
    return self.program().updates_per_period

  def zero_delay(self) -> "Synchronous":
    return Synchronous(self.S)


@frozen
class Synchronous(ProgramRule):
  """Synchronous SGD: every microbatch reads ``x^n``, all ``S`` blocks take its gradient.

  This is what flushing schedules (GPipe, 1F1B-flush) train as, and the zero-delay limit
  of every program rule: ``x^{n+1} = x^n - gamma g(x^n; xi_n)``.
  """

  S: int
  name: str = "sync"

  def __post_init__(self):
    check_S(self.S)

  def program(self) -> Program:
    return zero_delay_program(self.S)


@frozen
class PipeDreamRule(ProgramRule):
  """Steady-state PipeDream with ``S`` stages, one block per stage.

  Microbatch ``m`` reads block ``j`` at the start of ``F(m, j)`` (weight stashing keeps that
  version for its backward), gets one stochastic gradient at that stale point, and its block
  ``i`` part is applied at the end of ``B(m, i)``. The realized delays are exactly the table
  of :func:`rpd.theory.delay.tau_table` (checked in the tests).
  """

  S: int
  name: str = "pipedream"

  def __post_init__(self):
    check_S(self.S)

  def program(self) -> Program:
    return schedule_program("pipedream", self.S, 1)
