"""Problems (objectives split into S blocks) and their registry.

Adding a problem is one module (a :class:`~rpd.problems.base.Problem`) and one line in
``PROBLEMS``: a builder ``(argument or None, S, **options) -> Problem``.
"""
from __future__ import annotations

from typing import Callable

from rpd.errors import unknown
from rpd.problems.base import Problem, even_block_sizes, merge_blocks, split_blocks
from rpd.problems.logistic import Logistic, load_breast_cancer, load_logistic, make_logistic
from rpd.problems.quadratic import Quadratic, load_quadratic, make_quadratic


def _quadratic(arg, S, **kw):
  if arg is None:
    return make_quadratic(S, **kw)
  kw = {k: v for k, v in kw.items() if k in ("noise", "dtype")}
  return load_quadratic(arg, S, **kw)


def _logistic(arg, S, **kw):
  if arg is None:
    return make_logistic(S, **kw)
  kw = {k: v for k, v in kw.items() if k in ("batch", "lam", "dtype")}
  if arg == "breast_cancer":
    return load_breast_cancer(S, **kw)
  return load_logistic(arg, S, **kw)


def _charlm(arg, S, **kw):
  import inspect

  from rpd.problems.charlm import make_charlm
  bad = set(kw) - set(inspect.signature(make_charlm).parameters)
  if bad:
    raise unknown("charlm option", sorted(bad)[0], inspect.signature(make_charlm).parameters)
  return make_charlm(S, text=arg, **kw)


def _transformer(arg, S, **kw):
  from rpd.problems.transformer import build
  return build(arg, S, **kw)


def _mlp(arg, S, **kw):
  from rpd.problems.mlp import build
  return build(arg, S, **kw)


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "quadratic": _quadratic,
    "logistic": _logistic,
    "charlm": _charlm,
    "transformer": _transformer,
    "mlp": _mlp,
}


# The generic options each problem takes (``rpd train`` passes only these, no if-chains):
# d (dimension), n (rows), seed (data seed), noise (gradient noise), batch (minibatch).
OPTIONS: dict[str, tuple[str, ...]] = {
    "quadratic": ("d", "seed", "noise"),
    "logistic": ("d", "n", "seed", "batch"),
    "charlm": ("seed", "batch"),
    "transformer": ("batch",),
    "mlp": ("batch",),
}
FILE_OPTIONS: dict[str, tuple[str, ...]] = {  # with ``name:FILE`` (data from the file)
    "quadratic": ("noise",),
    "logistic": ("batch",),
    "charlm": ("seed", "batch"),
    "transformer": ("batch",),
    "mlp": ("batch",),
}


def problem_options(spec: str, **available) -> dict:
  """The subset of ``available`` options that problem ``spec`` takes."""
  name, sep, _ = spec.partition(":")
  if name not in PROBLEMS:
    raise unknown("problem", spec, PROBLEMS)
  names = (FILE_OPTIONS if sep else OPTIONS)[name]
  return {k: v for k, v in available.items() if k in names}


def get_problem(spec: str, S: int, **options) -> Problem:
  """Build problem ``spec`` (``name`` or ``name:argument``) with ``S`` blocks.

  Specs: ``quadratic`` (options d, L, mu, noise, seed, diagonal), ``quadratic:FILE.npz``,
  ``logistic`` (options n, d, batch, lam, seed), ``logistic:FILE.npz``,
  ``logistic:breast_cancer``, ``charlm`` (flax character LM on a bundled Markov source;
  every option of ``make_charlm``), ``charlm:TEXT_FILE``, ``transformer`` (decoder-only
  character transformer on the bundled corpus; options of ``make_transformer``),
  ``transformer:TEXT_FILE``, ``mlp`` / ``mlp:digits`` (deep MLP on scikit-learn's digits).

  Raises:
    ValueError: unknown problem or bad option/file (the message names the bad value).
  """
  name, sep, arg = spec.partition(":")
  if name not in PROBLEMS:
    raise unknown("problem", spec, PROBLEMS)
  return PROBLEMS[name](arg if sep else None, S, **options)


__all__ = ["PROBLEMS", "get_problem", "Problem", "Quadratic", "Logistic", "make_quadratic",
           "load_quadratic", "make_logistic", "load_logistic", "load_breast_cancer",
           "even_block_sizes", "merge_blocks", "split_blocks"]
__all__ += ["OPTIONS", "FILE_OPTIONS", "problem_options"]
