"""An optax wrapper that adds staleness to any gradient transformation.

``delayed(inner, tau)`` applies, at step ``k``, the gradient that was computed at step
``max(k - tau, 0)``: in an ordinary optax training loop (gradient at the current parameters,
``tx.update``, ``optax.apply_updates``) this turns the gradient at ``x^k`` into a gradient at
the stale point ``x^{k - tau}``, i.e. delayed SGD

    x^{k+1} = x^k - gamma * g(x^{max(k - tau, 0)}),

the ``S = 1`` case of the engine's ``constant:TAU`` rule (``x^t = x^0`` for ``t < 0``; the
test checks they agree bit for bit). The wrapper keeps a ring of ``tau`` past gradients
(``tau * d`` numbers) and is jit-, vmap- and pytree-friendly like any optax transformation.
Per-block delays and random block choice need the engine (:mod:`rpd.engine`).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class DelayedState(NamedTuple):
  """State of :func:`delayed`.

  Attributes:
    ring: ``tau`` past gradients per leaf (leading axis ``tau``).
    count: number of updates so far (int32).
    inner: the inner transformation's state.
  """

  ring: optax.Updates
  count: jax.Array
  inner: optax.OptState


def delayed(inner: optax.GradientTransformation, tau: int) -> optax.GradientTransformation:
  """Feed ``inner`` the gradient of ``tau`` steps ago (the first one until then).

  Args:
    inner: any optax transformation (e.g. ``optax.sgd(gamma)``).
    tau: delay in steps, an integer ``>= 0`` (``0``: ``inner`` unchanged).

  Returns:
    an optax ``GradientTransformation`` with state :class:`DelayedState`.

  Raises:
    ValueError: if ``tau`` is not an integer ``>= 0``.
  """
  if not isinstance(tau, int) or isinstance(tau, bool) or tau < 0:
    raise ValueError(f"delay must be an integer >= 0, got {tau!r}")

  def init_fn(params):
    ring = jax.tree.map(lambda p: jnp.zeros((tau,) + jnp.shape(p), jnp.result_type(p)), params)
    return DelayedState(ring=ring, count=jnp.zeros((), jnp.int32), inner=inner.init(params))

  def update_fn(updates, state, params=None):
    if tau == 0:
      out, inner_state = inner.update(updates, state.inner, params)
      return out, DelayedState(state.ring, state.count + 1, inner_state)
    first = state.count == 0
    # On the first step every slot holds g(x^0): reads before step 0 see x^0.
    ring = jax.tree.map(lambda r, g: jnp.where(first, jnp.broadcast_to(g, r.shape), r),
                        state.ring, updates)
    slot = state.count % tau
    stale = jax.tree.map(lambda r: r[slot], ring)  # written tau steps ago (or g(x^0))
    ring = jax.tree.map(lambda r, g: r.at[slot].set(g), ring, updates)
    out, inner_state = inner.update(stale, state.inner, params)
    return out, DelayedState(ring, state.count + 1, inner_state)

  return optax.GradientTransformation(init_fn, update_fn)
