"""``schedule:NAME``: train under the steady-state delays of any registered pipeline schedule.

* weight-stashing asynchronous schedules (``async_stash``) compile to an event program
  (:mod:`rpd.rules.program`): exact reads, one gradient per microbatch, updates in the
  schedule's order;
* flushing schedules (``sync_flush``) train as synchronous SGD (:class:`Synchronous`);
* other semantics (no stashing, double buffering) use the schedule's steady-state forward
  delay table as a cyclic :class:`rpd.rules.table.TableDelay`: the stale point of each update
  is exact for the forward, but the gradient is drawn per update and the backward's own
  version is not modelled (stated, not hidden).
"""
from __future__ import annotations

import numpy as np

from rpd.rules.base import IDENTITY, Hook, check_S, frozen
from rpd.rules.program_rule import ProgramRule, Synchronous
from rpd.rules.program import Program, schedule_program
from rpd.rules.table import TableDelay


@frozen
class ScheduleRule(ProgramRule):
  """The event program of an ``async_stash`` schedule with ``P = S`` devices (``V = 1``)."""

  S: int
  schedule: str
  name: str = "schedule"
  hook: Hook = IDENTITY

  def __post_init__(self):
    check_S(self.S)
    object.__setattr__(self, "name", f"schedule:{self.schedule}")

  def program(self) -> Program:
    return schedule_program(self.schedule, self.S, 1)


def schedule_rule(name: str, S: int):
  """The rule that trains under schedule ``name`` with ``S`` stages (see the module docs).

  Raises:
    KeyError: unknown schedule.
  """
  from rpd.schedules import get_schedule
  sched = get_schedule(name)
  if sched.semantics.synchronous:
    rule = Synchronous(S)
    object.__setattr__(rule, "name", f"schedule:{name}")
    return rule
  if (sched.semantics.asynchronous and sched.semantics.stashes):
    return ScheduleRule(S, name)
  table = np.asarray(sched.delay_table(S, 1))
  return TableDelay(S, table, "cyclic", f"schedule:{name}")
