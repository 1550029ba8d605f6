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
from rpd.rules.program_rule import ProgramRule, Synchronous, _program_reference
from rpd.rules.program import Program, schedule_program
from rpd.rules.registry import Param, register_rule
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

  def program(self) -> Program:
    return schedule_program(self.schedule, self.S, 1)

  @property
  def schedule_name(self) -> str:
    return self.schedule

  reference = _program_reference


@register_rule("schedule", params=(Param("schedule", str, meta="NAME"),),
               help="train under the steady-state delays of a registered pipeline schedule "
                    "(rpd schedules lists them)",
               examples=("schedule:pipedream", "schedule:pipemare", "schedule:gpipe"))
def schedule_from_spec(S: int, schedule: str):
  """``schedule:NAME`` (UnknownNameError for an unknown schedule)."""
  from rpd.errors import unknown
  from rpd.schedules import SCHEDULES
  if schedule not in SCHEDULES:
    raise unknown("schedule", schedule, SCHEDULES)
  return schedule_rule(schedule, S)


def schedule_rule(name: str, S: int):
  """The rule that trains under schedule ``name`` with ``S`` stages (see the module docs).

  Raises:
    KeyError: unknown schedule.
  """
  from rpd.schedules import get_schedule
  sched = get_schedule(name)
  if sched.semantics.synchronous:
    return Synchronous(S, f"schedule:{name}", timing=name)
  if (sched.semantics.asynchronous and sched.semantics.stashes):
    return ScheduleRule(S, name, f"schedule:{name}")
  table = np.asarray(sched.delay_table(S, 1))
  return TableDelay(S, table, "cyclic", f"schedule:{name}", timing=name)
