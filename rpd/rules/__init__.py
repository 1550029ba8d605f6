"""Stale-update rules and mitigations, and their registry.

Adding a rule is one file in this package: a rule class (an :class:`IterationRule` or
:class:`ProgramRule`) or a mitigation (a :class:`Hook`) decorated with
:func:`~rpd.rules.registry.register_rule` / :func:`~rpd.rules.registry.register_mitigation`
(its spec grammar, help and examples). This package imports every module in it, so the
rule is then buildable by :func:`get_rule`, listed by ``rpd train --help`` and the README's
table, and run through ``tests/test_rules_common.py`` (compiles once, state shape and dtype
fixed, zero delay reproduces plain SGD bit for bit, realized delays within ``tau_max``, the
engine equals the rule's own NumPy reference).
"""
from __future__ import annotations

import importlib
import pkgutil

from rpd.rules.base import IDENTITY, Hook, IterationRule, Rule, with_hook
from rpd.rules.registry import RULES, Param, register_mitigation, register_rule


def _import_all() -> None:
  """Import every module of this package (each registers what it defines)."""
  for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if not info.name.startswith("_"):
      importlib.import_module(f"{__name__}.{info.name}")


_import_all()

from rpd.rules.constant import ConstantDelay  # noqa: E402
from rpd.rules.dc_asgd import DelayCompensation  # noqa: E402
from rpd.rules.adaptive import DelayAdaptive  # noqa: E402
from rpd.rules.pipemare import PipeMare  # noqa: E402
from rpd.rules.two_bw import DoubleBuffered  # noqa: E402
from rpd.rules.none import NoDelay  # noqa: E402
from rpd.rules.program_rule import FixedProgram, PipeDreamRule, ProgramRule, Synchronous  # noqa: E402
from rpd.rules.predict import WeightPrediction  # noqa: E402
from rpd.rules.program import Program, compile_timed, schedule_program  # noqa: E402
from rpd.rules.rpd_rule import RandomizedPipeDream  # noqa: E402
from rpd.rules.schedule import ScheduleRule, schedule_rule  # noqa: E402
from rpd.rules.table import TableDelay  # noqa: E402


def get_rule(spec: str, S: int) -> Rule:
  """Build the rule ``spec`` (``name`` or ``name:arguments``) for ``S`` blocks.

  The grammar of every registered rule and mitigation is in ``RULES`` (``rpd train --help``
  lists it; mitigations compose with any base rule, ``BASE`` defaulting to ``pipedream``).
  The rule's ``name`` (and ``spec``) is the canonical form of ``spec``.

  Raises:
    rpd.errors.UnknownNameError: unknown rule (or schedule).
    ValueError: bad argument (the message names the bad value).
  """
  from rpd.rules.registry import build
  return build(spec, S)


__all__ = [
    "RULES", "get_rule", "Rule", "IterationRule", "ProgramRule", "Program", "NoDelay",
    "ConstantDelay", "TableDelay", "RandomizedPipeDream", "PipeDreamRule", "Synchronous",
    "ScheduleRule", "compile_timed", "schedule_program", "Hook", "IDENTITY", "with_hook",
    "FixedProgram", "WeightPrediction", "DelayCompensation", "DelayAdaptive", "PipeMare",
    "DoubleBuffered", "Param", "register_rule", "register_mitigation",
]
