"""Pipeline schedules and their registry.

Adding a schedule is one file (a :class:`~rpd.schedules.core.Schedule` subclass) and one
line in ``SCHEDULES`` below; the registry-driven tests then check it.
"""
from __future__ import annotations

from rpd.errors import unknown
from rpd.schedules.core import (Action, Schedule, ScheduleNotApplicable, SteadyStateError,
                                TimedSchedule, delay_table, delay_tables, idle_intervals,
                                one_f_one_b_actions, steady_state_delay_table, time_schedule,
                                update_order)
from rpd.schedules.chimera import Chimera
from rpd.schedules.chimera_fd import ChimeraFD
from rpd.schedules.dualpipe_v import DualPipeV
from rpd.schedules.gpipe import GPipe
from rpd.schedules.interleaved import Interleaved1F1B
from rpd.schedules.interleaved_zb import InterleavedZeroBubble
from rpd.schedules.looped_bfs import LoopedBFS
from rpd.schedules.onef1b_flush import OneFOneBFlush
from rpd.schedules.pipedream import PipeDream
from rpd.schedules.pipedream_2bw import PipeDream2BW
from rpd.schedules.pipemare import PipeMare
from rpd.schedules.zb_h1 import ZBH1
from rpd.schedules.zb_auto import ZBAuto
from rpd.schedules.zb_auto_v import ZBAutoV
from rpd.schedules.zb_h2 import ZBH2
from rpd.schedules.zb_v import ZBV

SCHEDULES: dict[str, Schedule] = {
    GPipe.name: GPipe(),
    OneFOneBFlush.name: OneFOneBFlush(),
    PipeDream.name: PipeDream(),
    PipeDream2BW.name: PipeDream2BW(),
    PipeMare.name: PipeMare(),
    Interleaved1F1B.name: Interleaved1F1B(),
    ZBH1.name: ZBH1(),
    ZBH2.name: ZBH2(),
    Chimera.name: Chimera(),
    ChimeraFD.name: ChimeraFD(),
    LoopedBFS.name: LoopedBFS(),
    InterleavedZeroBubble.name: InterleavedZeroBubble(),
    ZBV.name: ZBV(),
    DualPipeV.name: DualPipeV(),
    ZBAuto.name: ZBAuto(),
    ZBAutoV.name: ZBAutoV(),
}


def get_schedule(name: str) -> Schedule:
  """The registered schedule called ``name`` (its spec).

  Raises:
    rpd.errors.UnknownNameError (a ``KeyError``): with the list of known names.
  """
  if name not in SCHEDULES:
    raise unknown("schedule", name, SCHEDULES)
  return SCHEDULES[name]


# Specs like rules' (``rule.spec``, ``Rule.from_spec``): a schedule's spec is its name.
Schedule.spec = property(lambda self: self.name, doc="The registry spec of this schedule.")
Schedule.from_spec = staticmethod(get_schedule)


__all__ = [
    "Action", "Schedule", "ScheduleNotApplicable", "SteadyStateError", "TimedSchedule",
    "SCHEDULES", "get_schedule", "delay_table", "delay_tables", "idle_intervals",
    "one_f_one_b_actions", "steady_state_delay_table", "time_schedule", "update_order",
    "GPipe", "Interleaved1F1B", "OneFOneBFlush", "PipeDream", "PipeDream2BW", "PipeMare",
    "ZBH1", "ZBH2", "Chimera", "ChimeraFD", "LoopedBFS", "InterleavedZeroBubble", "ZBV", "DualPipeV",
    "ZBAuto", "ZBAutoV",
]
