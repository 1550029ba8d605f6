"""Errors that the CLI reports as one line with exit code 2."""
from __future__ import annotations


class InputError(ValueError):
  """Bad user input (a value, a file, a name). The message names the bad value."""


class DelayRangeError(ValueError):
  """A rule produced a delay outside ``[0, tau_max]`` (a bug in the rule, not a stale read)."""


class UnknownNameError(InputError, KeyError):
  """An unknown registry name or option (rules, problems, schedules, baselines).

  Every registry raises it through :func:`unknown`, so the message reads the same:
  ``unknown <what> '<name>'; known: a, b, c``. It is a ``ValueError`` (bad input, one line
  and exit 2 in the CLI) and a ``KeyError`` (a failed registry lookup, for callers that
  catch that).
  """

  def __str__(self):
    return str(self.args[0]) if self.args else ""


def unknown(what: str, name, known) -> UnknownNameError:
  """The one error for an unknown name or option of a registry."""
  return UnknownNameError(f"unknown {what} {name!r}; known: {', '.join(sorted(map(str, known)))}")


INT32_MAX = 2 ** 31 - 1


def check_int32(value: int, what: str) -> int:
  """``value`` if it fits the engine's int32 counters, else a one-line ``InputError``."""
  if value > INT32_MAX:
    raise InputError(f"{what} {value} is too large (at most {INT32_MAX})")
  return value
