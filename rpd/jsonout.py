"""JSON output of every ``--json``: strict JSON, with ``null`` for NaN and +-Infinity.

Python's ``json.dumps`` writes ``NaN`` and ``Infinity``, which are not JSON (RFC 8259) and
which strict parsers (``jq``, JavaScript's ``JSON.parse``) reject. :func:`dumps` replaces every
non-finite float (Python or NumPy) by ``null``, turns NumPy scalars and arrays into numbers
and lists, and then serialises with ``allow_nan=False``, so a non-finite value can never slip
through.
"""
from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

# One sentence for the help of every --json option.
JSON_HELP = "print one JSON object (NaN and +-Infinity are written as null)"


def clean(v: Any) -> Any:
  """``v`` with non-finite floats as ``None`` and NumPy values as Python ones (recursively)."""
  if isinstance(v, dict):
    return {str(k): clean(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [clean(x) for x in v]
  if isinstance(v, np.ndarray):
    return clean(v.tolist())
  if isinstance(v, (bool, np.bool_)):
    return bool(v)
  if isinstance(v, (int, np.integer)):
    return int(v)
  if isinstance(v, (float, np.floating)):
    f = float(v)
    return f if math.isfinite(f) else None
  return v


def dumps(obj: Any, **kwargs) -> str:
  """Strict JSON text of ``obj`` (see the module docstring); ``default=str`` for the rest."""
  kwargs.setdefault("default", str)
  return json.dumps(clean(obj), allow_nan=False, **kwargs)
