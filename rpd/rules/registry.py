"""The rule registry: every rule and mitigation registers itself where it is defined.

A rule file decorates its class (or a builder function) with :func:`register_rule`, a
mitigation file its hook class with :func:`register_mitigation`, giving the spec grammar
(typed :class:`Param` s), a one-line help and example specs. Everything else reads this one
registry: :func:`rpd.rules.get_rule` (parsing), the canonical ``rule.spec`` (formatting), the
``rpd train --help`` list, the README's rules table (:func:`markdown_table`, a test fails
when the README is stale) and the common test suite (its examples). ``rpd.rules`` imports
every module of its package, so a new rule is one new file and nothing else.

Grammar. A spec is ``NAME`` followed by ``:``-separated tokens. The params of an entry are
positional; an optional param whose token does not parse takes its default and the token
goes to the next param (a tagged param, e.g. ``uniform:TAU``, needs its tag first). A
mitigation's remaining tokens are its base rule's spec (default ``pipedream``). The canonical
spec writes params up to the last one that differs from its default (floats with ``repr``),
so ``geom:0.30:6`` and ``geom:0.3:6`` build the same rule, whose ``spec`` is ``geom:0.3:6``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from rpd.errors import check_int32, unknown

REQUIRED = object()
DEFAULT_BASE = "pipedream"


@dataclasses.dataclass(frozen=True)
class Param:
  """One typed argument of a spec.

  Attributes:
    name: the keyword the builder takes (a field of the rule or hook class).
    kind: ``int``, ``float``, ``str`` or a tuple of allowed strings.
    default: the value when omitted (``REQUIRED``: must be given).
    lo, hi: bounds, ``lo <= value`` and ``value < hi`` (``hi_closed``: ``<=``); ``None``: none.
    tag: a literal token that precedes the value (``rpd:uniform:TAU``).
    meta: the grammar's name of the value (``TAU``, ``LAMBDA``).
  """

  name: str
  kind: Any
  default: Any = REQUIRED
  lo: float | None = None
  hi: float | None = None
  hi_closed: bool = False
  tag: str | None = None
  meta: str = ""

  @property
  def label(self) -> str:
    meta = self.meta or self.name.upper()
    return f"{self.tag}:{meta}" if self.tag else meta

  def _what(self) -> str:
    if isinstance(self.kind, tuple):
      return f"one of {', '.join(self.kind)}"
    noun = {int: "an integer", float: "a finite number", str: "a name"}[self.kind]
    bounds = []
    if self.lo is not None:
      bounds.append(f">= {self.lo:g}")
    if self.hi is not None:
      bounds.append(f"{'<=' if self.hi_closed else '<'} {self.hi:g}")
    return noun + (" " + " and ".join(bounds) if bounds else "")

  def accepts(self, tokens: list[str]) -> bool:
    """Whether the next token(s) are this param's (a failed parse of an optional param)."""
    if not tokens:
      return False
    if self.tag:
      return tokens[0] == self.tag
    if isinstance(self.kind, tuple):
      return tokens[0] in self.kind
    try:
      self.kind(tokens[0])
    except ValueError:
      return False
    return True

  def parse(self, token: str, rule: str):
    """The value of ``token``; ``ValueError`` naming the rule, the param and the value."""
    bad = ValueError(f"{rule}: {self.label} must be {self._what()}, got {token!r}")
    if isinstance(self.kind, tuple):
      if token not in self.kind:
        raise bad
      return token
    try:
      value = self.kind(token)
    except ValueError:
      raise bad from None
    if self.kind is float and not math.isfinite(value):
      raise bad
    if self.lo is not None and value < self.lo:
      raise bad
    if self.hi is not None and (value > self.hi if self.hi_closed else value >= self.hi):
      raise bad
    if self.kind is int:
      check_int32(value, f"{rule}: {self.label}")
    return value

  def format(self, value) -> str:
    text = repr(float(value)) if self.kind is float else str(value)
    return f"{self.tag}:{text}" if self.tag else text


@dataclasses.dataclass(frozen=True)
class Entry:
  """A registered rule or mitigation.

  Attributes:
    name: the spec's first token.
    params: its typed arguments.
    help: one line.
    examples: specs the common suite runs (``{table}``: a path to an ``S x S`` table).
    build: ``build(S, **values) -> Rule`` (rules) or ``build(**values) -> Hook``.
    mitigation: composes with a base rule (``NAME[:ARGS]:BASE``).
    cls: the decorated class (``None`` for a builder function).
  """

  name: str
  params: tuple
  help: str
  examples: tuple
  build: Callable
  mitigation: bool = False
  cls: type | None = None

  @property
  def grammar(self) -> str:
    """``NAME``, then ``:ARG`` (``[:ARG]`` if optional), then ``:BASE`` for mitigations."""
    out = self.name
    for p in self.params:
      out += f":{p.label}" if p.default is REQUIRED else f"[:{p.label}]"
    return out + (":BASE" if self.mitigation else "")

  def parse(self, arg: str | None, spec: str) -> tuple[dict, str | None]:
    """``(values, base spec or None)`` of the argument string of ``spec``."""
    tokens = [] if arg is None else arg.split(":")
    values = {}
    for n, p in enumerate(self.params):
      last_str = p.kind is str and not p.tag and n == len(self.params) - 1
      if p.default is REQUIRED:
        if not tokens or (p.tag and tokens[0] != p.tag):
          raise ValueError(f"rule {spec!r} needs {self.grammar}")
      elif not p.accepts(tokens):
        values[p.name] = p.default
        continue
      if p.tag:
        tokens = tokens[1:]
        if not tokens:
          raise ValueError(f"rule {spec!r} needs {self.grammar}")
      token = ":".join(tokens) if last_str and not self.mitigation else tokens[0]
      tokens = [] if last_str and not self.mitigation else tokens[1:]
      values[p.name] = p.parse(token, spec)
    if self.mitigation:
      return values, ":".join(tokens) if tokens else DEFAULT_BASE
    if tokens:
      raise ValueError(f"rule {self.name} takes {self.grammar}, got unexpected "
                       f"{':'.join(tokens)!r} in {spec!r}")
    return values, None

  def format(self, values: dict, base: str | None = None) -> str:
    """The canonical spec of ``values`` (params up to the last non-default one)."""
    parts = [self.name]
    last = max([n for n, p in enumerate(self.params)
                if p.default is REQUIRED or values[p.name] != p.default], default=-1)
    parts += [p.format(values[p.name]) for p in self.params[:last + 1]]
    if base is not None:
      parts.append(base)
    return ":".join(parts)


RULES: dict[str, Entry] = {}


def _register(entry: Entry):
  if entry.name in RULES and RULES[entry.name].build is not entry.build:
    raise ValueError(f"rule name {entry.name!r} is registered twice")
  RULES[entry.name] = entry


def register_rule(name: str, *, params=(), help: str, examples=()):
  """Decorator: register a rule class (built as ``cls(S, **values)``) or a builder function
  ``f(S, **values) -> Rule`` under ``name``."""
  def deco(obj):
    _register(Entry(name, tuple(params), help, tuple(examples) or (name,), obj,
                    cls=obj if isinstance(obj, type) else None))
    return obj
  return deco


def register_mitigation(name: str, *, params=(), help: str, examples=()):
  """Decorator: register a mitigation (a hook class, built as ``cls(**values)``) under
  ``name``; its spec is ``name[:params]:BASE``."""
  def deco(cls):
    _register(Entry(name, tuple(params), help, tuple(examples), cls, mitigation=True,
                    cls=cls))
    return cls
  return deco


def build(spec: str, S: int):
  """The rule of ``spec`` for ``S`` blocks, its ``name`` the canonical spec.

  Raises:
    rpd.errors.UnknownNameError: unknown rule name.
    ValueError: a bad argument (the message names it).
  """
  import dataclasses as dc

  from rpd.rules.base import with_hook
  name, sep, arg = spec.partition(":")
  if name not in RULES:
    raise unknown("rule", spec, RULES)
  entry = RULES[name]
  values, base = entry.parse(arg if sep else None, spec)
  if entry.mitigation:
    base_rule = build(base, S)
    rule = with_hook(base_rule, entry.build(**values))
    canonical = entry.format(values, base_rule.name)
  else:
    rule = entry.build(S, **values)
    canonical = entry.format(values)
  return dc.replace(rule, name=canonical)


def rules_help() -> str:
  """The ``rpd train --rule`` list: one line per registered rule and mitigation."""
  width = max(len(e.grammar) for e in RULES.values())
  lines = [f"  {e.grammar:<{width}}  {e.help}" for e in sorted(RULES.values(),
                                                               key=_order)]
  return "rules (--rule; mitigations compose with any BASE rule):\n" + "\n".join(lines)


def _order(e: Entry):
  return (e.mitigation, e.name)


def markdown_table() -> str:
  """The README's rules table (generated; ``tests/test_rules_registry.py`` checks it)."""
  rows = ["| spec | kind | what | examples |", "|---|---|---|---|"]
  for e in sorted(RULES.values(), key=_order):
    ex = ", ".join(f"`{x}`" for x in e.examples if "{" not in x) or "`table:FILE.npy`"
    rows.append(f"| `{e.grammar}` | {'mitigation' if e.mitigation else 'rule'} | {e.help} "
                f"| {ex} |")
  return "\n".join(rows)


def examples() -> list[str]:
  """Every example spec of every registered entry (the common suite's parameters)."""
  return [x for e in sorted(RULES.values(), key=_order) for x in e.examples]

