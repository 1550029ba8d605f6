"""Pipeline schedules and their registry.

Adding a schedule is one file (a :class:`~rpd.schedules.core.Schedule` subclass) and one
line in ``SCHEDULES`` below; the registry-driven tests then check it.
"""
from __future__ import annotations

from rpd.schedules.core import (Action, Schedule, SteadyStateError, TimedSchedule,
                                delay_table, delay_tables, idle_intervals, steady_state_delay_table,
                                time_schedule, update_order)
from rpd.schedules.pipedream import PipeDream

SCHEDULES: dict[str, Schedule] = {
    PipeDream.name: PipeDream(),
}


def get_schedule(name: str) -> Schedule:
  """The registered schedule called ``name``.

  Raises:
    KeyError: with the list of known names, if ``name`` is unknown.
  """
  try:
    return SCHEDULES[name]
  except KeyError:
    raise KeyError(f"unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}") from None


__all__ = [
    "Action", "Schedule", "SteadyStateError", "TimedSchedule", "SCHEDULES", "get_schedule",
    "delay_table", "delay_tables", "idle_intervals", "steady_state_delay_table", "time_schedule",
    "update_order", "PipeDream",
]
