"""rpd: stale block-SGD, pipeline schedules and the staleness theory of pipeline parallelism.

See README.md for the conventions (names follow the maths: ``S`` stages/blocks, ``K``
iterations = block updates, ``gamma`` step size, ``tau[i][j]`` delays with rows the updated
block and columns the read block) and :mod:`rpd.schedules.core` for the time conventions.
"""
__version__ = "0.1.0"
