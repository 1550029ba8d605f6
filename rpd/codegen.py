"""XLA:CPU code generation chosen per compiled program: fast to compile, or fast to run.

A compiled program costs its compile time once and its run time every call. XLA:CPU's
default code generation (the MLIR fusion emitters, LLVM at ``-O3``) makes the fastest machine
code and the slowest compiles; the loop emitters at LLVM ``-O0`` compile a small engine program
2-4 times faster (in CPU) and run it up to 10 times slower (BENCHMARKS.md, session 12).
A sweep that runs for well under a second gains from the fast compile, a long one loses.

:data:`CODEGEN` names the choices; :func:`jit` makes one ``jax.jit`` per choice of a function
(``compiler_options``, so the choice is part of the compiled program and of its persistent
cache key); ``None`` leaves the process's own ``XLA_FLAGS`` in effect. :func:`for_work` is
the rule :func:`rpd.experiments.runner.run_engine_batch` and ``run_localsgd_batch`` use: the
optimized code for a program whose estimated work (floats of state touched per iteration
times iterations times configurations) reaches :data:`OPTIMIZE_FROM_WORK`, the process
default otherwise. The numbers a program computes depend on its code generation in the last
digits (summation order after fusion), never on anything else: the choice is a pure function
of the batch's sizes, so a run gives the same bits every time on a machine.
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
}

# Work (floats of state per iteration x iterations x configurations) from which a sweep's
# program is compiled "optimized". Measured per batch of the quick run (BENCHMARKS.md, session
# 12, `benchmarks/bench_codegen.py`), in CPU seconds, since XLA's default code generation
# compiles one program on several threads: from 2e8 up (the critical step-size search at
# S = 16, the character LM's PipeDream) the fast code's extra run time, up to 26 s a batch,
# exceeds the extra compile CPU of the optimized code (2-7 s); below it the fast compile wins
# (the transformer LM, 1.2e8: 12 s less CPU) or the two are within a few seconds.
OPTIMIZE_FROM_WORK = 2e8


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


def for_work(work: float) -> str | None:
  """``"optimized"`` when ``work >= OPTIMIZE_FROM_WORK``, else ``None`` (process default).

  Args:
    work: estimated floats touched by the program: per iteration (the state a step reads
      and writes: ``S * D`` parameters plus the rule's delay buffer), times iterations,
      times configurations of the sweep.
  """
  return "optimized" if work >= OPTIMIZE_FROM_WORK else None
