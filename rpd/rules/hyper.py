"""Traced hyperparameters: the numeric arguments of a rule and its mitigations.

A rule is a static (hashed) argument of the compiled program, so each value of a numeric
argument stored on it would compile a new program. Classes list their traced fields in
``hyper`` (``dc``: ``lam``; ``pipemare``: ``decay``); :func:`split` takes them out (a static
skeleton, the same for every value, and a float vector), :func:`merge` puts the traced values
back inside the program. :func:`rpd.engine.sweep` vmaps over them (``variants=``), so a
sweep over ``lambda`` or ``decay`` runs as one program.
"""
from __future__ import annotations

import copy

import numpy as np


def _members(rule):
  """The objects that may carry traced fields, in a fixed order: the rule, its hooks."""
  hook = getattr(rule, "hook", None)
  hooks = () if hook is None else getattr(hook, "hooks", (hook,))
  return [rule, *hooks]


def _rebuild(rule, fill):
  """A copy of ``rule`` (and its hooks) with each traced field set by ``fill(obj, name)``."""
  def strip(obj):
    names = getattr(type(obj), "hyper", ())
    if not names:
      return obj
    new = copy.copy(obj)
    for n in names:
      object.__setattr__(new, n, fill(obj, n))
    return new
  out = strip(rule)
  hook = getattr(rule, "hook", None)
  if hook is not None:
    if hasattr(hook, "hooks"):
      new_hook = copy.copy(hook)
      object.__setattr__(new_hook, "hooks", tuple(strip(h) for h in hook.hooks))
    else:
      new_hook = strip(hook)
    out = copy.copy(out) if out is rule else out
    object.__setattr__(out, "hook", new_hook)
  return out


def values(rule) -> np.ndarray:
  """The traced hyperparameters of ``rule`` (float64, in :func:`split`'s order)."""
  return np.array([float(getattr(m, n)) for m in _members(rule)
                   for n in getattr(type(m), "hyper", ())], np.float64)


def split(rule):
  """``(skeleton, values)``: the rule with its traced fields (and its name, which spells
  them) blanked, the same object for every value; and the values."""
  vals = values(rule)
  skeleton = _rebuild(rule, lambda obj, n: None)
  if vals.size:
    skeleton = copy.copy(skeleton) if skeleton is rule else skeleton
    object.__setattr__(skeleton, "name", f"{type(rule).__name__}(traced)")
  return skeleton, vals


def merge(skeleton, vals):
  """The rule with traced values ``vals`` (a 1-D array, e.g. a tracer) filled back in."""
  if not np.shape(vals)[0]:
    return skeleton
  it = iter(range(np.shape(vals)[0]))
  return _rebuild(skeleton, lambda obj, n: vals[next(it)])
