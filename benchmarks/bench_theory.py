"""CPU time of the theory's pure-Python and sympy passes (what ``theory/THEOREM.md`` needs).

Command (recorded with its output in BENCHMARKS.md):

    python benchmarks/bench_theory.py

Runs, in one process and in this order (each step reuses what the earlier ones cached, as the
test module ``tests/test_theorem.py`` does), and prints the CPU seconds of each:

1. PipeDream's steady-state delay tables for S = 1..64 from the schedule simulation (the
   fixture of ``tests/test_delay_theory.py``: timing and staleness passes);
2. PipeDream's event programs for S = 1..64 (``rpd.theory.stability.pipedream_order``:
   timing pass and ``compile_timed``);
3. the orders in S of every scaling, three theorem variants (``rpd.theory.scaling.orders``:
   sympy, the variants' derivations included);
4. the rest of ``theory/THEOREM.md`` (``rpd.theory.certify.render_markdown``: the checks,
   the stability thresholds and the tables).

To compare two commits, run it in a checkout of each (installed with ``pip install -e .``),
back to back: CPU time drifts with the machine's load less than wall time, but it drifts.
A benchmark, not a test.
"""
from __future__ import annotations

import time


def _step(label: str, fn) -> float:
  t0 = time.process_time()
  fn()
  dt = time.process_time() - t0
  print(f"{label}: {dt:.2f} s CPU", flush=True)
  return dt


def main() -> int:
  import jax  # noqa: F401  (imports first: they are not what is measured)
  import sympy  # noqa: F401

  import rpd.rules  # noqa: F401
  from rpd.schedules import get_schedule
  from rpd.theory import certify, scaling, stability

  pd = get_schedule("pipedream")
  total = sum((
      _step("PipeDream delay tables, S = 1..64 (schedule simulation)",
            lambda: [pd.delay_table(S) for S in range(1, 65)]),
      _step("PipeDream programs, S = 1..64 (stability.pipedream_order)",
            lambda: [stability.pipedream_order(S) for S in range(1, 65)]),
      _step("scaling.orders, three variants",
            lambda: [scaling.orders(v) for v in ("cs", "martingale", "block")]),
      _step("the rest of THEOREM.md (certify.render_markdown)", certify.render_markdown),
  ))
  print(f"in all: {total:.1f} s CPU")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
