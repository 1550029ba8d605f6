"""Errors that the CLI reports as one line with exit code 2."""
from __future__ import annotations


class InputError(ValueError):
  """Bad user input (a value, a file, a name). The message names the bad value."""


class DelayRangeError(ValueError):
  """A rule produced a delay outside ``[0, tau_max]`` (a bug in the rule, not a stale read)."""
