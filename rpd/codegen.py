"""XLA:CPU code generation chosen per compiled program: fast to compile, or fast to run.

A compiled program costs its compile time once and its run time every call. XLA:CPU's
default code generation (the MLIR fusion emitters, LLVM at ``-O3``) makes the fastest machine
code and the slowest compiles; the loop emitters at LLVM ``-O0`` compile a small engine program
2-4 times faster (in CPU) and run it up to 10 times slower (BENCHMARKS.md, session 12); the
loop emitters at LLVM ``-O1`` lie between, nearer the optimized code's run time and the fast
code's compile time (session 13). A sweep that runs for well under a second gains from the
fast compile, a long one loses.

:data:`CODEGEN` names the choices; :func:`jit` makes one ``jax.jit`` per choice of a function
(``compiler_options``, so the choice is part of the compiled program and of its persistent
cache key); ``None`` leaves the process's own ``XLA_FLAGS`` in effect. :func:`for_work` is
the rule :func:`rpd.experiments.runner.run_engine_batch` and ``run_localsgd_batch`` use: by a
program's estimated work (floats of state touched per iteration times iterations times
configurations), in a process that compiles fast (the quick run, :func:`process_default`),
"fast", "balanced" from :data:`BALANCED_FROM_WORK`, "optimized" from
:data:`OPTIMIZE_FROM_WORK`; a process that compiles with XLA's defaults (the full run) keeps
them for every sweep. The numbers a program computes depend on its code generation in the last
digits (summation order after fusion), never on anything else: the choice is a pure function
of the batch's sizes and the process's ``XLA_FLAGS``, so a run gives the same bits every time
on a machine.
"""
from __future__ import annotations

import functools

# Code generation name -> XLA debug options of the compile (``jax.jit(compiler_options=)``).
CODEGEN = {
    # XLA:CPU's defaults: MLIR fusion emitters, LLVM -O3 (the fastest machine code).
    "optimized": {"xla_cpu_use_fusion_emitters": True, "xla_backend_optimization_level": 3},
    # loop emitters, LLVM -O0: compiles about 2.5x faster, runs slower (the quick run's
    # process default: :data:`rpd.experiments.common.FAST_COMPILE_XLA_FLAGS` is made from it)
    "fast": {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 0},
    # loop emitters, LLVM -O1: between the two (measured per batch: BENCHMARKS.md, session 13)
    "balanced": {"xla_cpu_use_fusion_emitters": False, "xla_backend_optimization_level": 1},
}

# Work (floats of state per iteration x iterations x configurations) from which a sweep's
# program is compiled "balanced", and from which "optimized"; below BALANCED_FROM_WORK, "fast".
# Measured per batch of the quick run under each of the three (BENCHMARKS.md, session 13,
# `benchmarks/bench_codegen.py --modes fast,balanced,optimized`), in CPU seconds, since a
# compile runs on several threads: the loop emitters at LLVM -O1 run within 25% of the
# optimized code (42 s against 33.5 s for the 98 batches; 164 s with -O0) and compile in half
# its time (104 s against 198 s; 56 s with -O0). The fast code wins where a batch runs for
# well under a second (the small quadratics, LocalSGD's short sweeps), "balanced" from about
# 1e7 up (the stage sweep's logistic regressions, the rpd rule's critical step-size search at
# S = 8 and 16, the character LM: 34 s less CPU than fast), and no quick-run batch gained
# from the optimized code. Over the 98 batches: 227 s of CPU with these two thresholds, 254 s
# with session 12's single one (optimized from 2e8), 292 s all fast, 242 s all balanced, 402 s
# all optimized. The transformer LM's programs are large for their work (12 s more compile CPU
# than fast at -O1, 2.6 s less run); its batches (2e7, 1.2e8) lose 8 s of CPU to "balanced":
# no estimate that ignores the model's gradient separates it from the character LM (5e7,
# which gains 21 s). OPTIMIZE_FROM_WORK gives XLA's best code to a fast-compiling process's
# programs long enough for their run to outweigh the compile: about five times the quick run's
# rpd rule at S = 16 (2.1e8: -O1 ran 3.7 s against 2.7 s and compiled 1.3 s faster, so the
# two break even near 5 times its length). The quick run's one batch above it, the character
# LM's PipeDream at S = 16 (1.6e10, inflated by its stash, which a step touches one slot of),
# costs 2 s more CPU optimized than balanced. The full run keeps XLA's defaults for every
# batch (for_work: the tiers made its stage sweep and critical step-size search 49% slower).
BALANCED_FROM_WORK = 1e7
OPTIMIZE_FROM_WORK = 1e9


def check(codegen: str | None) -> str | None:
  """``codegen`` if it is ``None`` or a name of :data:`CODEGEN`; ``ValueError`` otherwise."""
  if codegen is not None and codegen not in CODEGEN:
    raise ValueError(f"unknown code generation {codegen!r}; known: {', '.join(CODEGEN)} "
                     "(or None: the process's XLA_FLAGS)")
  return codegen


@functools.lru_cache(maxsize=None)
def _jit(fun, codegen, static_argnames):
  import jax  # here, so that reading CODEGEN (rpd.experiments.common) does not import JAX
  if codegen is None:
    return jax.jit(fun, static_argnames=static_argnames)
  return jax.jit(fun, static_argnames=static_argnames,
                 compiler_options=dict(CODEGEN[codegen]))


def jit(fun, codegen: str | None, static_argnames: tuple[str, ...] = ()):
  """``jax.jit(fun, static_argnames=..., compiler_options=CODEGEN[codegen])``, one per
  ``(fun, codegen)`` (so each keeps its own in-memory cache of compiled programs).

  Args:
    fun: the Python function to compile.
    codegen: a name of :data:`CODEGEN`, or ``None`` for the process's ``XLA_FLAGS``.
    static_argnames: as in ``jax.jit``.

  Returns:
    the jitted function.
  """
  return _jit(fun, check(codegen), tuple(static_argnames))


def xla_flags(codegen: str) -> tuple[str, ...]:
  """``CODEGEN[codegen]`` as ``XLA_FLAGS`` entries (``--name=value``), for a whole process."""
  options = CODEGEN[check(codegen)]
  return tuple(f"--{name}={str(value).lower()}" for name, value in options.items())


def process_default(xla_flags_env: str | None = None) -> str | None:
  """``"fast"`` when ``XLA_FLAGS`` (default: the environment's) carries both flags of
  ``CODEGEN["fast"]`` (``rpd reproduce --quick``, the test suite), else ``None`` (the process
  compiles with XLA's defaults, as the full run does)."""
  import os
  flags = (os.environ.get("XLA_FLAGS", "") if xla_flags_env is None else xla_flags_env).split()
  return "fast" if all(f in flags for f in xla_flags("fast")) else None


def for_work(work: float, default: str | None) -> str | None:
  """The code generation of a sweep from its estimated work and the process's default.

  In a process that compiles fast (``default == "fast"``: the quick run): ``"fast"`` below
  :data:`BALANCED_FROM_WORK`, ``"balanced"`` from it, ``"optimized"`` from
  :data:`OPTIMIZE_FROM_WORK` (both inclusive). In a process that compiles with XLA's defaults
  (``default is None``: the full run) every sweep keeps them (``None``): measured on the full
  run's stage sweep and critical step-size search, the three tiers took 505 s wall, 947 s
  CPU against 339 s, 656 s with XLA's default code for every batch (BENCHMARKS.md, session
  13); its batches run several times longer than the quick run's, which the thresholds
  were measured on. The choice is a pure function of ``work`` and ``default``, so a run gives
  the same bits every time on a machine.

  Args:
    work: estimated floats touched by the program: per iteration (the state a step reads
      and writes: ``S * D`` parameters plus the rule's delay buffer), times iterations,
      times configurations of the sweep.
    default: the process's code generation (:func:`process_default`): ``"fast"`` or ``None``.

  Returns:
    a name of :data:`CODEGEN`, or ``None`` (the process's own).
  """
  if check(default) != "fast":
    return default
  if work >= OPTIMIZE_FROM_WORK:
    return "optimized"
  return "balanced" if work >= BALANCED_FROM_WORK else "fast"
