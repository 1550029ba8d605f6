"""``rpd delays``: the steady-state delay table of a schedule, simulated and in closed form."""
from __future__ import annotations

import argparse

import numpy as np

from rpd.cli import positive_int
from rpd import jsonout
from rpd.errors import InputError
from rpd.schedules import SCHEDULES, get_schedule
from rpd.schedules.metrics import DELAY_CONVENTION

NAME = "delays"
HELP = "steady-state delay table of a schedule, simulated and in closed form"

# The timing-pass durations of `schedule.delay_table(S)` (core's default): the table depends on
# them, e.g. PipeDream with S = 6 has tau_max 33 with B = F but 34 with B = 2F (the default of
# `rpd schedules`, whose unsplit backward runs B + W = 2).
_DURATIONS = {"F": 1.0, "B": 1.0, "W": 1.0}

# Schedules whose delay table has a sympy closed form in `theory/`.
_CLOSED_FORMS = {"pipedream": "rpd.theory.delay"}


def add_arguments(p: argparse.ArgumentParser) -> None:
  """Options of ``rpd delays``."""
  p.add_argument("--schedule", default="pipedream",
                 help=f"schedule name (known: {', '.join(sorted(SCHEDULES))})")
  p.add_argument("--stages", "-S", type=positive_int("--stages"), required=True,
                 help="number of pipeline stages S (integer >= 1)")
  p.add_argument("--json", action="store_true", help=jsonout.JSON_HELP)


def closed_form(schedule: str):
  """``(module, tau_max_expr, tau_expr)`` of a schedule with a closed form, else ``None``."""
  if schedule not in _CLOSED_FORMS:
    return None
  import importlib
  mod = importlib.import_module(_CLOSED_FORMS[schedule])
  return mod, mod.tau_max_floor_form(), mod.tau_expr()


def run(args) -> int:
  """Simulate the schedule, compare with the closed form, print."""
  try:
    schedule = get_schedule(args.schedule)
  except KeyError as e:
    raise InputError(e.args[0]) from None
  S = args.stages
  from rpd.guards import check_simulated_stages
  check_simulated_stages(S, "--stages")
  tau = schedule.delay_table(S, durations=_DURATIONS)
  from rpd.schedules.metrics import versions_delay_max
  n_long = schedule.steady_state_microbatches(S, 1)
  tau_versions = versions_delay_max(schedule, schedule.timed(S, n_long, 1, _DURATIONS)) \
      if not schedule.semantics.synchronous else 0
  cf = closed_form(args.schedule)
  out = {
      "schedule": args.schedule,
      "stages": S,
      "tau": tau.tolist(),
      "tau_max": int(tau.max()),
      "tau_versions_max": int(tau_versions),
      "tau_mean": float(tau.mean()),
      "own_block": [int(tau[k, k]) for k in range(S)],
      "conventions": "rows = updated block, columns = read block, 0-based; "
                     "see rpd.schedules.core",
      "durations": dict(_DURATIONS),
      "delay_convention": DELAY_CONVENTION,
  }
  if cf is not None:
    mod, tmax, texpr = cf
    closed = mod.tau_table(S)
    out["tau_max_formula"] = str(tmax)
    out["tau_formula"] = str(texpr) + "  (i, j 1-based)"
    out["closed_form_matches_simulation"] = bool(np.array_equal(closed, tau))
  if args.json:
    print(jsonout.dumps(out))
    return 0
  width = max(3, len(str(out["tau_max"])))
  print(f"schedule {args.schedule}, S = {S}: steady-state delay table tau[i][j]")
  print("(row i = updated block, column j = read block, 0-based)")
  print(" " * 6 + "".join(f"{f'j={j}':>{width + 3}}" for j in range(S)))
  for i_, row in enumerate(tau):
    print(f"i={i_:<4}" + "".join(f"{v:>{width + 3}}" for v in row))
  print(f"tau_max = {out['tau_max']}, mean = {out['tau_mean']:.4g} (in block updates); "
        f"tau_versions_max = {out['tau_versions_max']} (in versions: updates of the read block)")
  print("convention: " + DELAY_CONVENTION)
  print("durations of the timing pass: F = B = W = 1 (an unsplit backward is B = F); the table "
        "depends on F:B (PipeDream S = 6: tau_max 33 with B = F, 34 with B = 2F, the default of "
        "`rpd schedules`)")
  if cf is not None:
    print(f"closed form (sympy, theory/delay.py): tau[i][j] = {out['tau_formula']}")
    print(f"tau_max(S) = {out['tau_max_formula']} = {mod.tau_max_expr()}")
    print("closed form equals simulation:", out["closed_form_matches_simulation"])
  return 0
