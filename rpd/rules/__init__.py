"""Stale-update rules and their registry.

Adding a rule is one file (an :class:`IterationRule` or :class:`ProgramRule`) and one line in
``RULES``: a builder ``(argument string or None, S) -> Rule``. ``tests/test_rules_common.py``
runs every registered rule through the common suite (compiles once, state shape and dtype
fixed, zero delay reproduces plain SGD bit for bit, realized delays within ``tau_max``).
"""
from __future__ import annotations

from typing import Callable

from rpd.errors import check_int32, unknown

from rpd.rules.base import IDENTITY, Hook, IterationRule, Rule, with_hook
from rpd.rules.constant import ConstantDelay
from rpd.rules.dc_asgd import DelayCompensation
from rpd.rules.adaptive import DelayAdaptive
from rpd.rules.pipemare import PipeMare
from rpd.rules.two_bw import DoubleBuffered
from rpd.rules.none import NoDelay
from rpd.rules.program_rule import FixedProgram, PipeDreamRule, ProgramRule, Synchronous
from rpd.rules.predict import WeightPrediction
from rpd.rules.program import Program, compile_timed, schedule_program
from rpd.rules.rpd_rule import RandomizedPipeDream
from rpd.rules.schedule import ScheduleRule, schedule_rule
from rpd.rules.table import TableDelay


def _int_arg(arg: str | None, what: str) -> int:
  if arg is None:
    raise ValueError(f"{what} needs an integer argument, e.g. {what}:4")
  try:
    value = int(arg)
  except ValueError:
    raise ValueError(f"delay must be an integer >= 0, got {arg!r}") from None
  if value < 0:
    raise ValueError(f"delay must be an integer >= 0, got {value}")
  return check_int32(value, "delay")


def _rpd(arg, S):
  if arg is None:
    return RandomizedPipeDream(S)
  kind, _, val = arg.partition(":")
  if kind != "uniform":
    raise unknown("rpd delay source", arg, ["uniform:TAU"])
  return RandomizedPipeDream(S, uniform_tau=_int_arg(val or None, "rpd:uniform"))


def _table(arg, S):
  if arg is None:
    raise ValueError("table needs a file: table:FILE.npy (an S x S integer array)")
  from rpd.io import load_array
  tau = load_array(arg, "delay table", ndim=2, kind="i")  # InputError: one line
  return TableDelay(S, tau, "cyclic", f"table:{arg}")


def _no_arg(cls):
  def build(arg, S):
    if arg is not None:
      raise ValueError(f"rule {cls.__name__} takes no argument, got {arg!r}")
    return cls(S)
  return build


def _schedule(arg, S):
  if not arg:
    raise ValueError("schedule needs a name: schedule:NAME")
  try:
    return schedule_rule(arg, S)
  except KeyError:
    from rpd.schedules import SCHEDULES
    raise unknown("schedule", arg, SCHEDULES) from None


def _predict(arg, S):
  return with_hook(get_rule(arg or "pipedream", S), WeightPrediction())


def _dc(arg, S):
  head, sep, rest = (arg or "").partition(":")
  try:
    lam = float(head)
  except ValueError:
    return with_hook(get_rule(arg or "pipedream", S), DelayCompensation())
  return with_hook(get_rule(rest or "pipedream", S), DelayCompensation(lam))


def _per_gradient(rule):
  """Block updates per gradient: ``S`` for program rules, 1 for iteration rules."""
  return rule.S if isinstance(rule, ProgramRule) else 1


def _adapt(arg, S):
  head, _, rest = (arg or "").partition(":")
  mode, base = (head, rest) if head in ("1p", "inv") else ("1p", arg)
  rule = get_rule(base or "pipedream", S)
  return with_hook(rule, DelayAdaptive(mode, _per_gradient(rule)))


def _pipemare(arg, S):
  head, _, rest = (arg or "").partition(":")
  warmup, base = (int(head), rest) if head.isdigit() else (0, arg)
  rule = get_rule(base or "pipedream", S)
  return with_hook(rule, PipeMare(warmup, unit=_per_gradient(rule)))


def _2bw(arg, S):
  return DoubleBuffered(S) if arg is None else DoubleBuffered(S, _int_arg(arg, "2bw"))


RULES: dict[str, Callable[[str | None, int], Rule]] = {
    "none": _no_arg(NoDelay),
    "constant": lambda arg, S: ConstantDelay(S, _int_arg(arg, "constant")),
    "table": _table,
    "rpd": _rpd,
    "pipedream": _no_arg(PipeDreamRule),
    "sync": _no_arg(Synchronous),
    "schedule": _schedule,
    "predict": _predict,  # weight prediction (SpecTrain / PipeMare) on any rule
    "dc": _dc,  # DC-ASGD delay compensation on any rule
    "adapt": _adapt,  # delay-adaptive step size gamma/(1+tau) or gamma/tau on any rule
    "pipemare": _pipemare,  # PipeMare's warm-up and EMA discrepancy correction on any rule
    "2bw": _2bw,  # PipeDream-2BW double-buffered weights (one version stale)
}


def get_rule(spec: str, S: int) -> Rule:
  """Build the rule ``spec`` (``name`` or ``name:argument``) for ``S`` blocks.

  Specs: ``none``, ``constant:TAU``, ``table:FILE.npy``, ``rpd``, ``rpd:uniform:TAU``,
  ``pipedream``, ``sync``, ``schedule:NAME``; mitigations on any of them: ``predict:BASE``
  (weight prediction), ``dc:BASE`` / ``dc:LAMBDA:BASE`` (delay compensation),
  ``adapt:BASE`` / ``adapt:inv:BASE`` (delay-adaptive step), ``pipemare:BASE`` /
  ``pipemare:WARMUP:BASE`` (PipeMare); ``BASE`` defaults to ``pipedream``. ``2bw`` /
  ``2bw:LAG``: PipeDream-2BW's double-buffered weights.

  Raises:
    rpd.errors.UnknownNameError: unknown rule (or schedule, delay source).
    ValueError: bad argument (the message names the bad value).
  """
  name, sep, arg = spec.partition(":")
  if name not in RULES:
    raise unknown("rule", spec, RULES)
  return RULES[name](arg if sep else None, S)


__all__ = [
    "RULES", "get_rule", "Rule", "IterationRule", "ProgramRule", "Program", "NoDelay",
    "ConstantDelay", "TableDelay", "RandomizedPipeDream", "PipeDreamRule", "Synchronous",
    "ScheduleRule", "compile_timed", "schedule_program", "Hook", "IDENTITY", "with_hook",
    "FixedProgram", "WeightPrediction", "DelayCompensation", "DelayAdaptive", "PipeMare",
    "DoubleBuffered",
]
