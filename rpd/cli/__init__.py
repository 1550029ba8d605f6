"""The ``rpd`` command line: one subcommand per module, each with ``add_arguments`` and ``run``.

Adding a subcommand is one module in this package defining ``NAME``, ``HELP``,
``add_arguments(parser)`` and ``run(args) -> int``; :func:`commands` discovers it. A module's
``run(args) -> int`` raises :class:`rpd.errors.InputError` for bad input; ``main`` turns it
into one line on stderr and exit code 2 (argparse's own errors too), never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import math
import pkgutil
import sys

from rpd.errors import InputError

def commands() -> dict[str, str]:
  """Subcommand name -> module, for every module of this package that defines ``NAME``.

  Command modules import heavy libraries (JAX) inside ``run``, so building the parser is cheap.
  """
  out = {}
  for info in pkgutil.iter_modules(__path__):
    module = importlib.import_module(f"{__name__}.{info.name}")
    if hasattr(module, "NAME"):
      out[module.NAME] = module.__name__
  return dict(sorted(out.items()))

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3  # rpd train: the run diverged (non-finite loss, or growth by GROWTH_FACTOR)


class _Parser(argparse.ArgumentParser):
  """ArgumentParser whose errors are one line (no usage dump) and exit code 2."""

  def error(self, message):  # noqa: D102 (argparse API)
    self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def positive_int(name: str):
  """argparse type: an integer ``>= 1``; the error names the option and the bad value."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {text!r}") from None
    if value < 1:
      raise argparse.ArgumentTypeError(f"{name} must be an integer >= 1, got {value}")
    return value

  return parse


def seed_int(name: str):
  """argparse type: an integer seed that fits in int32 (``-2^31 .. 2^31 - 1``)."""

  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{name} must be an integer, got {text!r}") from None
    if not -2**31 <= value < 2**31:
      raise argparse.ArgumentTypeError(f"{name} must fit in int32 (-2^31 .. 2^31 - 1), "
                                       f"got {value}")
    return value

  return parse


def finite_float(name: str, *, minimum: float = 0.0, strict: bool = True):
  """argparse type: a finite float ``> minimum`` (``>= minimum`` unless ``strict``).

  The error names the option and the bad value (``nan`` and ``inf`` are rejected).
  """
  rel = ">" if strict else ">="
  what = f"{name} must be a finite number {rel} {minimum:g}"

  def parse(text: str) -> float:
    try:
      value = float(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"{what}, got {text!r}") from None
    ok = value > minimum if strict else value >= minimum
    if not (math.isfinite(value) and ok):
      raise argparse.ArgumentTypeError(f"{what}, got {text}")
    return value

  return parse


def build_parser() -> argparse.ArgumentParser:
  """The top-level parser with every registered subcommand."""
  parser = _Parser(prog="rpd", description="rpd: staleness theory of pipeline-parallel training")
  sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
  sub.required = True
  for name, module_name in commands().items():
    module = importlib.import_module(module_name)
    p = sub.add_parser(name, help=module.HELP, description=module.HELP)
    module.add_arguments(p)
    from rpd.cache import NO_CACHE_HELP
    p.add_argument("--no-cache", dest="_no_cache", action="store_true", help=NO_CACHE_HELP)
    p.set_defaults(_module=module_name)
  return parser


def main(argv: list[str] | None = None) -> int:
  """Entry point of the ``rpd`` console script and ``python -m rpd``."""
  parser = build_parser()
  args = parser.parse_args(argv)
  from rpd import cache  # compiled programs kept between runs unless --no-cache
  cache.configure(not args._no_cache)
  try:
    return int(importlib.import_module(args._module).run(args) or 0)
  except InputError as e:
    print(f"rpd {args.command}: error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except ModuleNotFoundError as e:  # any dependency missing: one line naming its extra
    from rpd.optional import hint
    print(f"rpd {args.command}: error: {hint(e, f'rpd {args.command}')}", file=sys.stderr)
    return EXIT_BAD_INPUT
  except KeyboardInterrupt:
    print(f"rpd {args.command}: interrupted; finished results are kept", file=sys.stderr)
    return 130
