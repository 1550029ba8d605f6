"""PRNG key conventions shared by the engine, the rules and their references.

The run key splits into a selection root and a sample root. Iteration ``k`` of an iteration
rule draws its block and delays with ``select_key(key, k) = fold_in(split(key)[0], k)``; the
stochastic sample of iteration (or microbatch) ``n`` uses ``sample_key(key, n) =
fold_in(split(key)[1], n + 2^20)`` (``n`` may be negative for microbatches in flight at
iteration 0).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

SAMPLE_OFFSET = 1 << 20  # sample keys of microbatches n >= -2**20 are fold_in(root, n + offset)


def select_key(key: jax.Array, k) -> jax.Array:
  """The key an iteration rule receives at iteration ``k``."""
  return jax.random.fold_in(jax.random.split(key)[0], k)


def sample_key(key: jax.Array, n) -> jax.Array:
  """The key of the stochastic sample of iteration (or microbatch) ``n``."""
  return jax.random.fold_in(jax.random.split(key)[1], jnp.asarray(n) + SAMPLE_OFFSET)
