"""Choosing a schedule: the Pareto frontier over bubble, memory and staleness.

For a user's ``P`` devices, ``M`` microbatches and measured ``F, B, W`` durations, every
applicable schedule is simulated (:func:`rpd.schedules.metrics.schedule_metrics`) and
compared on four costs, all to be minimised:

* ``bubble``: ``steady_bubble_ratio`` (idle fraction in continuous operation: over the whole
  batch for flushing schedules, the steady window for asynchronous ones);
* ``activations``: ``activation_memory``, peak activations per device in microbatch
  device-shares (a chunk of a ``V``-chunk schedule counts ``1/V``);
* ``weights``: ``weight_memory``, peak weight copies per device in device-shares (versions
  kept times replicas);
* ``staleness``: ``tau_versions_max``, the delay in versions (optimizer steps).

Row ``a`` *dominates* ``b`` when ``a`` is no worse on every cost and better on one
(tolerance ``1e-9``). A memory budget ``{"activations": A, "weights": W}`` (either may be
absent) and a staleness tolerance mark the rows that exceed them *over budget*; dominance is
decided among the rows within budget, and the *frontier* is the non-dominated rows within
budget.
"""
from __future__ import annotations

from typing import Mapping, Sequence

COSTS = ("bubble", "activations", "weights", "staleness")
_KEY = {"bubble": "steady_bubble_ratio", "activations": "activation_memory",
        "weights": "weight_memory", "staleness": "tau_versions_max"}
_TOL = 1e-9


def costs(row: Mapping) -> dict[str, float]:
  """The four costs of a metrics row (see the module docstring)."""
  return {c: float(row[_KEY[c]]) for c in COSTS}


def dominates(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
  """Whether costs ``a`` dominate costs ``b``: no worse everywhere, better somewhere."""
  return (all(a[c] <= b[c] + _TOL for c in COSTS)
          and any(a[c] < b[c] - _TOL for c in COSTS))


def over_budget(cost: Mapping[str, float], budget: Mapping[str, float]) -> list[str]:
  """Names of the budget entries (``activations``, ``weights``, ``staleness``) ``cost`` exceeds."""
  return [k for k, v in budget.items() if v is not None and cost[k] > v + _TOL]


def frontier(rows: Sequence[Mapping], budget: Mapping[str, float] | None = None) -> list[dict]:
  """Mark every applicable row: ``status`` is ``"frontier"``, ``"dominated"`` (with
  ``dominated_by``, the names of the rows within budget that dominate it) or
  ``"over budget"`` (with ``over``, the exceeded entries).

  Args:
    rows: metrics rows of :func:`~rpd.schedules.metrics.schedule_metrics` (rows with a
      ``skipped`` key are passed through unchanged).
    budget: optional limits ``{"activations", "weights", "staleness"}``.

  Returns:
    one dict per row: ``schedule``, the costs, both delays (``tau_max`` in block updates,
    ``tau_versions_max`` in versions) with the row's ``delay_convention``, ``status`` and
    its reason (and zb-auto's ``exact`` step when it ran).
  """
  budget = dict(budget or {})
  out = []
  for r in rows:
    if "skipped" in r:
      out.append(dict(r))
      continue
    c = costs(r)
    out.append({"schedule": r["schedule"], "semantics": r["semantics"], **c,
                "tau_max": r["tau_max"], "tau_versions_max": r["tau_versions_max"],
                "delay_convention": r["delay_convention"], "makespan": r["makespan"],
                "over": over_budget(c, budget),
                **({"exact": r["exact"]} if "exact" in r else {})})
  live = [o for o in out if "skipped" not in o and not o["over"]]
  for o in out:
    if "skipped" in o:
      continue
    if o["over"]:
      o["status"] = "over budget"
      continue
    by = [q["schedule"] for q in live if q is not o and dominates(q, o)]
    o["status"] = "dominated" if by else "frontier"
    o["dominated_by"] = by
  return out
