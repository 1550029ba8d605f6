"""Stale-update rules: what block is updated at each iteration and how stale its read is.

A rule is a small, final, hashable (static) object. The engine (:mod:`rpd.engine`) owns the
parameters, the optimizer state and the delay buffers; a rule only says *which* stale point
each iteration reads. There are two families:

* :class:`IterationRule` -- one block update per engine step. At iteration ``k`` it returns the
  block ``i_k`` and the delays ``tau_k`` (one per block ``j``): the engine reads
  ``x_hat^k_j = x_j^{k - tau_kj}`` from an undo log of the last ``tau_max`` block updates,
  draws a fresh stochastic gradient at ``x_hat^k`` and updates block ``i_k``. Adding such a
  rule means writing :meth:`IterationRule.select`.
* :class:`ProgramRule` -- a steady-state pipeline schedule compiled to a periodic *event
  program* (:class:`rpd.rules.program.Program`): reads of block ``b`` by microbatch ``m``,
  one stochastic gradient per microbatch at the point it read, and block updates applied in
  the schedule's order. This is how ``pipedream`` and ``schedule:NAME`` run.

Both families expose ``tau_max`` (the largest delay they can produce, which sizes the
buffers) and ``zero_delay()`` (the same rule with every delay zero; the common test suite
checks it reproduces plain SGD bit for bit).
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp


class Rule(abc.ABC):
  """Common interface of every stale-update rule.

  Attributes:
    name: the registry spec that builds this rule (e.g. ``"constant:3"``).
    S: number of blocks.
  """

  name: str
  S: int

  @property
  @abc.abstractmethod
  def tau_max(self) -> int:
    """Largest delay (in block updates) the rule can produce."""

  @property
  @abc.abstractmethod
  def updates_per_step(self) -> int:
    """Block updates (iterations) per engine step."""

  @abc.abstractmethod
  def zero_delay(self) -> "Rule":
    """The same rule with all delays zero (reproduces plain SGD)."""


class IterationRule(Rule):
  """A rule that picks one block and one delay vector per iteration.

  Subclasses are frozen dataclasses (hashable, so the engine can treat them as static) and
  implement :meth:`select`; the default rule state is empty.
  """

  @property
  def updates_per_step(self) -> int:
    return 1

  def init_state(self) -> Any:
    """Rule state carried through the scan (a pytree of fixed shape and dtype)."""
    return ()

  @abc.abstractmethod
  def select(self, state: Any, key: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
    """Block and delays of iteration ``k``.

    Args:
      state: the rule state.
      key: a PRNG key private to iteration ``k`` (do not reuse it for anything else).
      k: iteration index (int32 scalar).

    Returns:
      ``(i_k, tau_S, state)``: the block to update (int32 scalar in ``0..S-1``), the delays
      (int32 ``(S,)``, entries in ``0..tau_max``; block ``j`` of the stale read is
      ``x_j^{k - tau_S[j]}``, with ``x^t = x^0`` for ``t < 0``) and the next rule state.
    """


def uniform_block(key: jax.Array, S: int) -> jax.Array:
  """``i ~ Uniform{0, ..., S-1}`` (int32 scalar)."""
  return jax.random.randint(key, (), 0, S, dtype=jnp.int32)


def check_S(S: int) -> None:
  """Raise ``ValueError`` unless ``S`` is an integer >= 1."""
  if not isinstance(S, int) or isinstance(S, bool) or S < 1:
    raise ValueError(f"S must be an integer >= 1, got {S!r}")


def frozen(cls):
  """Decorator: a frozen, hashable dataclass (rules are static arguments of the engine)."""
  return dataclasses.dataclass(frozen=True)(cls)
