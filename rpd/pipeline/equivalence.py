"""The exact correspondence between a pipelined run and the engine's program rules.

The engine (:func:`rpd.engine.run`) runs a program rule *in steady state*: at iteration 0 the
microbatches in flight have read ``x^0``, those whose gradient event has passed hold their
gradient at ``x^0``, and some of their block updates are counted as done before iteration 0
(they are simply not applied). A real pipeline starts empty, and during its fill every
forward reads ``x^0`` too (no update has been applied yet). The two coincide update for update
when the pipeline

1. runs ``m0`` extra microbatches first, where ``m0`` is the number of microbatches the engine
   has in flight with a negative index at iteration 0 (their reads all see ``x^0``, since
   nothing before them is applied), and
2. applies exactly the block updates ``(m, s)`` that the engine applies in its first ``K``
   iterations, microbatch ``m`` of the pipeline being microbatch ``m - m0`` of the engine
   (same sample key ``sample_key(key, m - m0)``); the pipeline's other updates (those the
   engine counts before iteration 0, and the drain after iteration ``K``) are skipped.

Why this is exact: block ``s`` is read and written only on stage ``s``, so only the order of
the reads ``F(., s)`` and updates ``B(., s)`` *on one stage* matters; PipeDream's per-stage
order (``F(j)`` precedes ``B(k)`` iff ``j <= w_s + k``, ``w_s = S - 1 - s``) is the same in the
fill as in steady state, and the engine's event order restricted to one block is that order
(the simulator's time order of one device). The first condition is the only cost: the first
``m0`` microbatches are a warm-up with frozen weights for the blocks the engine does not
update. For the flushing schedules there is nothing to match: the engine's ``sync`` rule takes
one gradient of a batch per update, the executor the mean of the gradients of its ``M``
microbatches (slices of that batch), and batch ``n`` uses the engine's key ``n``.
"""
from __future__ import annotations

import numpy as np

from rpd.rules import ProgramRule


def engine_updates(rule: ProgramRule, K: int) -> list[tuple[int, int]]:
  """The block updates ``(n, b)`` of the engine's first ``K`` iterations, in order."""
  prog = rule.program()
  if K % prog.updates_per_period:
    raise ValueError(f"K={K} must be a multiple of {prog.updates_per_period}")
  out = []
  for period in range(K // prog.updates_per_period):
    out += [(period * prog.q + o, b) for kind, o, b in prog.events if kind == "U"]
  return out


def engine_window(rule: ProgramRule, K: int) -> tuple[int, int, np.ndarray]:
  """``(m0, M, apply)`` of the pipeline run equal to ``K`` engine iterations of ``rule``.

  ``M`` microbatches in all, ``apply[m, s]`` whether ``B(m, s)`` applies its update, and the
  sample offset ``-m0`` (see the module docstring).
  """
  ups = engine_updates(rule, K)
  m0 = max(0, -min(n for n, _ in ups))
  M = max(n for n, _ in ups) + 1 + m0
  apply = np.zeros((M, rule.S), bool)
  for n, b in ups:
    apply[n + m0, b] = True
  return m0, M, apply
