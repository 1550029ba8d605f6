"""Per-block optimizer directions of the engine (:func:`rpd.engine.run`'s ``optimizer``)."""
from __future__ import annotations

import functools
from typing import Callable

import optax

OPTIMIZERS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "sgd": optax.identity,
    "momentum": lambda: optax.trace(decay=0.9),
    "adam": optax.scale_by_adam,
}


def get_optimizer(optimizer) -> optax.GradientTransformation:
  """The direction transformation for ``optimizer`` (a name in ``OPTIMIZERS`` or optax).

  The engine multiplies the direction by ``-gamma``: ``"sgd"`` is ``x - gamma g``,
  ``"momentum"`` heavy ball with ``beta = 0.9`` (``v <- g + 0.9 v``), ``"adam"`` Adam with
  optax's defaults. A user's ``GradientTransformation`` is used as a direction (give it no
  learning rate of its own).

  Raises:
    ValueError: unknown name.
  """
  if isinstance(optimizer, optax.GradientTransformation):
    return optimizer
  if optimizer not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {optimizer!r}; known: {', '.join(OPTIMIZERS)}")
  return _named_optimizer(optimizer)


@functools.lru_cache(maxsize=None)
def _named_optimizer(name: str) -> optax.GradientTransformation:
  # One instance per name, so that the compiled program is reused across runs.
  return OPTIMIZERS[name]()
