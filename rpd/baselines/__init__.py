"""Baselines that pipeline-parallel training is compared with, and their registry.

Adding a baseline is one file with a small frozen class (``name``, ``run``, ``sweep``) and one
line in ``BASELINES``. ``get_baseline("localsgd:H")`` sets a parameter from the spec.
"""
from __future__ import annotations

from rpd.baselines.localsgd import BaselineResult, LocalSGD
from rpd.errors import unknown

BASELINES = {
    "localsgd": LocalSGD,
}


def get_baseline(spec: str):
  """The baseline named by ``spec`` (``NAME`` or ``NAME:H``, e.g. ``localsgd:8``).

  Raises:
    rpd.errors.UnknownNameError (a ``KeyError`` and a ``ValueError``): naming the unknown
      baseline and the known ones.
    ValueError: for a bad parameter.
  """
  name, _, arg = spec.partition(":")
  if name not in BASELINES:
    raise unknown("baseline", name, BASELINES)
  if not arg:
    return BASELINES[name]()
  try:
    H = int(arg)
  except ValueError:
    raise ValueError(f"baseline parameter must be an integer H, got {arg!r} in {spec!r}") from None
  return BASELINES[name](H=H)


__all__ = ["BASELINES", "BaselineResult", "LocalSGD", "get_baseline"]
