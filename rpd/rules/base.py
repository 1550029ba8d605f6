"""The stale-update rule protocol: a rule owns its state, its read and its update.

Stale block SGD (:mod:`rpd.engine`) updates, at iteration ``k``, one block ``i_k`` of
``x = (x_1, ..., x_S)`` with a gradient taken at a *read point* ``x_hat^k``:

    x_{i_k}^{k+1} = x_{i_k}^k - gamma * opt(T(g_{i_k}(x_hat^k; xi))),

where ``opt`` is the per-block optimizer direction (owned by the engine) and ``T`` the
rule's transform of the gradient (identity unless a mitigation changes it). A rule decides
which block is updated, where the gradient is taken and how it becomes the update; the
engine owns the optimizer state, divergence, metrics and sharding.

The protocol (in the style of optax's ``init``/``update`` pairs)
----------------------------------------------------------------
A rule is a small, frozen, hashable object (a static argument of the compiled program) with

* ``init(x0, key, ctx) -> state``: its state (a pytree of fixed shapes and dtypes): delay
  buffers, counters, a mitigation's state. ``x0`` are this device's blocks
  (``S_loc x D``; all ``S`` unsharded).
* ``step(carry, key, ctx) -> carry``: one engine step (``updates_per_step`` iterations). It
  reads ``carry.x``, ``carry.k`` and its own ``carry.rule``, takes stochastic gradients
  with ``ctx.grad(point, key)`` at the points it chooses, and hands its block updates to
  ``ctx.apply(carry, blocks, g_rows, pos, tau=...)`` (which runs the optimizer, the
  divergence and delay checks, the metrics and records the realized delays); it returns the
  carry with its new state in ``carry.rule``. The engine advances ``carry.k`` after the
  step and raises ``UpdateCountError`` unless it applied ``updates_per_step`` updates.
* ``read_point(carry, key, ctx) -> x_hat``: the (gathered, ``S x D``) point the next
  iteration reads, for the ``stale_x_err`` / ``stale_grad_err`` metrics.
* ``tau_max``, ``updates_per_step``, ``buffer_floats(D)``, ``zero_delay()``, and
  ``reference(x0, grad, gamma, K, key)``: the rule's semantics once more in float64 NumPy.

``ctx`` (:class:`rpd.engine_context.Context`) carries the static pieces of the run: the problem,
the block layout (``ctx.S``, ``ctx.S_loc``, ``ctx.local``, ``ctx.gather``, ``ctx.own``),
and the flag ``ctx.track``.

Two families implement the protocol and are what one normally extends:

* :class:`IterationRule` (this module): one block update per step; a subclass writes only
  :meth:`IterationRule.select` (block and delays); the family owns the undo log
  (:mod:`rpd.rules.buffers`) that serves ``x_hat^k_j = x_j^{k - tau_kj}``.
* :class:`rpd.rules.program_rule.ProgramRule`: a steady-state pipeline schedule compiled to
  an event program, with one microbatch slot per microbatch in flight (weight stashing).

A *mitigation* (:class:`Hook`) changes the read point and/or the gradient of any rule of
either family: ``with_hook(rule, hook)`` composes them (e.g. weight prediction on top of
``pipedream``). A new mitigation is one :class:`Hook` file and one registry line.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Any, NamedTuple

import numpy as np
import jax
import jax.numpy as jnp

from rpd.keys import sample_key, select_key


class Rule(abc.ABC):
  """Common interface of every stale-update rule (see the module docstring).

  Attributes:
    name: the registry spec that builds this rule (e.g. ``"constant:3"``).
    S: number of blocks.
  """

  name: str
  S: int

  @property
  @abc.abstractmethod
  def tau_max(self) -> int:
    """Largest delay (in block updates) the rule can produce; the engine checks it."""

  @property
  @abc.abstractmethod
  def updates_per_step(self) -> int:
    """Block updates (iterations) per engine step."""

  @property
  def schedule_name(self) -> str | None:
    """The registered pipeline schedule this rule trains under (its timing gives
    ``sim_time``, :func:`rpd.simtime.rule_time_per_microbatch`), or ``None``."""
    return getattr(self, "timing", None)

  @property
  def updates_per_gradient(self) -> int:
    """Block updates per stochastic gradient (1: one block per gradient; a program rule
    applies each microbatch's gradient to all ``S`` blocks)."""
    return 1

  @abc.abstractmethod
  def zero_delay(self) -> "Rule":
    """The same rule with all delays zero (reproduces its zero-delay algorithm)."""

  @abc.abstractmethod
  def init(self, x0: jax.Array, key: jax.Array, ctx) -> Any:
    """The rule's state at iteration 0 (a pytree of fixed shapes and dtypes)."""

  @abc.abstractmethod
  def step(self, carry, key: jax.Array, ctx):
    """One engine step: ``updates_per_step`` block updates through ``ctx``; new carry."""

  @abc.abstractmethod
  def read_point(self, carry, key: jax.Array, ctx) -> jax.Array:
    """The gathered ``S x D`` point the next iteration reads (for the metrics)."""

  @abc.abstractmethod
  def buffer_floats(self, D: int) -> int:
    """Numbers held in delay buffers with padded block width ``D``."""

  def reference(self, x0, grad, gamma: float, K: int, key) -> np.ndarray:
    """``x^K`` of plain SGD under this rule (and its mitigation) in float64 NumPy, written
    from the rule's definition, independently of :meth:`step`; the common suite checks the
    engine against it for every registered rule. ``grad``: the exact gradient
    ``(S, D) -> (S, D)``; ``key``: the run key (for the rule's documented random draws)."""
    raise NotImplementedError(f"rule {self.name} has no NumPy reference")

  @property
  def spec(self) -> str:
    """The registry spec that rebuilds this rule (``get_rule(rule.spec, rule.S)``)."""
    return self.name

  @classmethod
  def from_spec(cls, spec: str, S: int) -> "Rule":
    """The rule the registry builds from ``spec`` (it must be a ``cls``)."""
    from rpd.rules import get_rule
    rule = get_rule(spec, S)
    if not isinstance(rule, cls):
      raise ValueError(f"spec {spec!r} builds a {type(rule).__name__}, not a {cls.__name__}")
    return rule


# ---------------------------------------------------------------------------------------
# Mitigations.


class Hook:
  """A mitigation: changes where the gradient is taken and/or how it becomes the update.

  A pure object with a state of its own (``init``), composed with any rule by
  :func:`with_hook`. The rule families call

  * ``read(state, xhat, h)`` on the read point just before the gradient is taken
    (``xhat``: this device's blocks of the stale read, ``S_loc x D``; ``h``: for each local
    block the number of its own updates between its read and the update this gradient
    serves, the "staleness in versions" a weight predictor extrapolates over);
  * ``grad(state, g_rows, x_rows, xhat_rows, tau_rows)`` on the gradient rows of the
    updated blocks just before the optimizer (``x_rows``: the blocks now, ``xhat_rows``:
    the same blocks at the read, ``tau_rows``: each update's delay vector, ``(n, S)``);
  * ``observe(state, lbs, owned, delta_rows)`` after updates of local blocks ``lbs``
    (``delta_rows = x_new - x_old``; rows with ``owned`` false belong to other devices).

  Flags say which of them do anything, so an identity hook costs nothing.
  """

  name: str = "identity"
  changes_read: bool = False
  changes_grad: bool = False
  observes: bool = False
  #: numeric fields traced in the compiled program (a sweep over them does not recompile)
  hyper: tuple = ()

  def init(self, x0: jax.Array) -> Any:
    return ()

  def read(self, state, xhat, h):
    return xhat

  def grad(self, state, g_rows, x_rows, xhat_rows, tau_rows):
    return g_rows

  def update(self, state, g_rows, x_rows, xhat_rows, tau_rows, *, blocks, k):
    """The gradient transform with its state, ``(g_rows, state)`` (in the style of optax's
    ``update``; default: :meth:`grad`, state unchanged). A mitigation that keeps state on
    the gradient (e.g. delay-compensated momentum) overrides this; ``blocks`` are the rows'
    local block indices, ``k`` their iterations."""
    return self.grad(state, g_rows, x_rows, xhat_rows, tau_rows), state

  def observe(self, state, lbs, owned, delta_rows):
    return state

  def buffer_floats(self, S: int, D: int) -> int:
    """Numbers the mitigation stores on top of the rule's buffers."""
    return 0

  def reference(self, S: int, D: int) -> "HookReference":
    """The mitigation's semantics in plain float64 NumPy (:class:`HookReference`), written
    independently of :meth:`read` / :meth:`grad` / :meth:`observe`; the common suite checks
    the engine against it on two base rules. Every registered mitigation defines it."""
    raise NotImplementedError(f"mitigation {self.name} has no NumPy reference")


class HookReference:
  """A mitigation's NumPy reference (identity here), called by the rules' references.

  For every block update, in time order: ``read(point_SxD, h_S)`` when the gradient is
  taken (``h``: updates of each block the read missed), ``grad(g_row, x_row, point_row,
  tau_row, c, b)`` before the step (``tau_row``: iterations between the read of each block
  and this update; ``c``: block updates before this one; ``b``: the block),
  ``observe(b, delta_row)`` after it.
  """

  def read(self, point, h):
    return point

  def grad(self, g_row, x_row, point_row, tau_row, c, b):
    return g_row

  def observe(self, b, delta_row):
    pass


class _Identity(Hook):
  def reference(self, S, D):
    return HookReference()


IDENTITY = _Identity()


@dataclasses.dataclass(frozen=True)
class Chain(Hook):
  """Mitigations applied in turn (``outer:inner:BASE``: ``inner`` first, then ``outer``).

  Reads and gradients pass through the hooks from the innermost to the outermost; each
  keeps its own state (a tuple); every hook observes every update.
  """

  hooks: tuple = ()
  name: str = "chain"

  @property
  def changes_read(self):
    return any(h.changes_read for h in self.hooks)

  @property
  def changes_grad(self):
    return any(h.changes_grad for h in self.hooks)

  @property
  def observes(self):
    return any(h.observes for h in self.hooks)

  def init(self, x0):
    return tuple(h.init(x0) for h in self.hooks)

  def read(self, state, xhat, h):
    for hook, s in zip(self.hooks, state):
      xhat = hook.read(s, xhat, h) if hook.changes_read else xhat
    return xhat

  def update(self, state, g_rows, x_rows, xhat_rows, tau_rows, *, blocks, k):
    out = []
    for hook, s in zip(self.hooks, state):
      if hook.changes_grad:
        g_rows, s = hook.update(s, g_rows, x_rows, xhat_rows, tau_rows, blocks=blocks, k=k)
      out.append(s)
    return g_rows, tuple(out)

  def grad(self, state, g_rows, x_rows, xhat_rows, tau_rows):
    raise TypeError("a Chain transforms gradients with update (it may keep state)")

  def observe(self, state, lbs, owned, delta_rows):
    return tuple(h.observe(s, lbs, owned, delta_rows) if h.observes else s
                 for h, s in zip(self.hooks, state))

  def buffer_floats(self, S, D):
    return sum(h.buffer_floats(S, D) for h in self.hooks)

  def reference(self, S, D):
    return _ChainReference([h.reference(S, D) for h in self.hooks])


class _ChainReference(HookReference):
  def __init__(self, refs):
    self.refs = refs

  def read(self, point, h):
    for r in self.refs:
      point = r.read(point, h)
    return point

  def grad(self, g_row, x_row, point_row, tau_row, c, b):
    for r in self.refs:
      g_row = r.grad(g_row, x_row, point_row, tau_row, c, b)
    return g_row

  def observe(self, b, delta_row):
    for r in self.refs:
      r.observe(b, delta_row)


def with_hook(rule: Rule, hook: Hook) -> Rule:
  """``rule`` with mitigation ``hook``; its name is ``"<hook>:<rule>"``.

  A hook with a ``unit`` field (delays counted in gradients) gets the rule's
  ``updates_per_gradient``. On a rule that already has mitigations the hooks chain
  (:class:`Chain`): the new one is applied after them.
  """
  if "hook" not in {f.name for f in dataclasses.fields(rule)}:
    raise ValueError(f"rule {rule.name} takes no mitigation: declare the field "
                     "`hook: Hook = IDENTITY` in its dataclass")
  if "unit" in {f.name for f in dataclasses.fields(hook)}:
    hook = dataclasses.replace(hook, unit=rule.updates_per_gradient)
  name = f"{hook.name}:{rule.name}"
  old = rule.hook
  if old is not IDENTITY:
    hook = Chain((old.hooks if isinstance(old, Chain) else (old,)) + (hook,))
  return dataclasses.replace(rule, hook=hook, name=name)


def keep_hook(rule: Rule, new: Rule) -> Rule:
  """``new`` with ``rule``'s mitigation (for ``zero_delay`` of a mitigated rule)."""
  hook = getattr(rule, "hook", IDENTITY)
  if hook is IDENTITY:
    return new
  return dataclasses.replace(new, hook=hook, name=f"{hook.name}:{new.name}")


def observe_updates(hook: Hook, hstate, x_before, x_after, lbs, owned):
  """Call ``hook.observe`` with the deltas of local blocks ``lbs`` (skipped if unused)."""
  if not hook.observes:
    return hstate
  return hook.observe(hstate, lbs, owned, x_after[lbs] - x_before[lbs])


# ---------------------------------------------------------------------------------------
# Iteration rules: one block, one delay vector per iteration; the family owns the undo log.


class IterationState(NamedTuple):
  """State of an :class:`IterationRule`.

  Attributes:
    select: the subclass's own state (:meth:`IterationRule.init_state`).
    log: the undo log (:class:`rpd.rules.buffers.UndoLog`) of the last ``tau_max`` updates.
    hook: the mitigation's state.
  """

  select: Any
  log: Any
  hook: Any


class IterationRule(Rule):
  """A rule that picks one block and one delay vector per iteration.

  Subclasses are frozen dataclasses (hashable, so the engine can treat them as static) and
  implement :meth:`select`. Iteration ``k``: ``i_k, tau_k = select(...)``; the read is
  ``x_hat^k_j = x_j^{k - tau_kj}`` (``x^t = x^0`` for ``t < 0``) from an undo log of the
  last ``tau_max`` block updates (``tau_max * D`` numbers); the gradient is drawn at
  ``x_hat^k`` with sample ``k``; block ``i_k`` is updated.
  """

  hook: Hook = IDENTITY

  @property
  def updates_per_step(self) -> int:
    return 1

  def init_state(self) -> Any:
    """The subclass's own state carried through the scan (default: none)."""
    return ()

  @abc.abstractmethod
  def select(self, state: Any, key: jax.Array, k: jax.Array) -> tuple[jax.Array, jax.Array, Any]:
    """Block and delays of iteration ``k``.

    Args:
      state: the subclass's state.
      key: a PRNG key private to iteration ``k`` (do not reuse it for anything else).
      k: iteration index (int32 scalar).

    Returns:
      ``(i_k, tau_S, state)``: the block to update (int32 scalar in ``0..S-1``), the delays
      (int32 ``(S,)``, entries in ``0..tau_max``, checked by the engine; block ``j`` of the
      stale read is ``x_j^{k - tau_S[j]}``) and the next state.
    """

  def buffer_floats(self, D: int) -> int:
    return self.tau_max * D + self.hook.buffer_floats(self.S, D)

  def init(self, x0, key, ctx):
    from rpd.rules.buffers import UndoLog
    return IterationState(self.init_state(), UndoLog.init(self.tau_max, x0), self.hook.init(x0))

  def _read(self, state: IterationState, x, key, k, ctx):
    """``(i, tau, x_hat_loc, next select state)`` of iteration ``k``."""
    i, tau, sel = self.select(state.select, select_key(key, k), k)
    tau_loc = ctx.local(tau)
    xhat = state.log.read(x, tau_loc, k)
    if self.hook.changes_read:
      xhat = self.hook.read(state.hook, xhat, state.log.versions_since(tau_loc, k))
    return i, tau, xhat, sel

  def step(self, carry, key, ctx):
    state = carry.rule
    k = carry.k
    i, tau, xhat_loc, sel = self._read(state, carry.x, key, k, ctx)
    xhat = ctx.gather(xhat_loc)
    g = ctx.grad(xhat, sample_key(key, k))
    li, owned = ctx.own(i)
    g_i = g[i]
    hstate = state.hook
    if self.hook.changes_grad:
      g_rows, hstate = self.hook.update(hstate, g_i[None], carry.x[li][None],
                                        xhat_loc[li][None], tau[None], blocks=li[None],
                                        k=k[None])
      g_i = g_rows[0]
    x_before = carry.x
    carry = ctx.apply(carry, i[None], g_i[None], k[None], tau=tau[None], xhat=xhat)
    hstate = observe_updates(self.hook, hstate, x_before, carry.x, li[None], owned[None])
    log = state.log.push(k, li, owned, x_before[li])
    return carry._replace(rule=IterationState(sel, log, hstate))

  def read_point(self, carry, key, ctx):
    return ctx.gather(self._read(carry.rule, carry.x, key, carry.k, ctx)[2])

  # The NumPy reference of the family: a subclass writes reference_select.

  def reference_init(self) -> Any:
    """The NumPy state of :meth:`reference_select` (default: none)."""
    return None

  def reference_select(self, state, key, k: int):
    """``(i_k, tau_k (S,) ints, state)`` of iteration ``k`` in plain NumPy / Python, written
    from the rule's definition, not from :meth:`select` (random draws follow the documented
    key convention, :func:`rpd.keys.select_key`)."""
    raise NotImplementedError(f"rule {self.name} has no NumPy reference")

  def reference(self, x0, grad, gamma: float, K: int, key) -> np.ndarray:
    """``x^K`` of plain SGD under this rule, in float64 NumPy, from the definition.

    ``x^{k+1}_i = x^k_i - gamma T(g_i(P(x_hat^k)))`` for ``i = i_k``, with
    ``x_hat^k_j = x^{max(k - tau_kj, 0)}_j`` from the whole iterate history (no undo log),
    ``P`` / ``T`` the mitigation's reference read and gradient (identity without one).

    Args:
      x0: ``(S, D)`` start; grad: exact gradient ``(S, D) -> (S, D)`` (float64 NumPy);
      gamma: step size; K: iterations; key: the run key.
    """
    x = np.array(x0, np.float64)
    hist, blocks = [x.copy()], []
    mit = self.hook.reference(self.S, x.shape[1])
    state = self.reference_init()
    for k in range(K):
      i, tau, state = self.reference_select(state, key, k)
      tau = np.asarray(tau, np.int64)
      start = np.maximum(k - tau, 0)
      xhat = np.stack([hist[start[j]][j] for j in range(self.S)])
      h = np.array([sum(b == j for b in blocks[start[j]:]) for j in range(self.S)])
      point = mit.read(xhat, h)
      g = mit.grad(grad(point)[i], x[i], point[i], tau, k, i)
      new = x[i] - gamma * g
      mit.observe(i, new - x[i])
      x[i] = new
      hist.append(x.copy())
      blocks.append(i)
    return x


def uniform_block(key: jax.Array, S: int) -> jax.Array:
  """``i ~ Uniform{0, ..., S-1}`` (int32 scalar)."""
  return jax.random.randint(key, (), 0, S, dtype=jnp.int32)


def reference_uniform_block(key, k: int, S: int) -> int:
  """The block a uniform rule draws at iteration ``k`` (the documented convention:
  ``randint(select_key(key, k), (), 0, S)``), as a Python int, for NumPy references."""
  return int(jax.random.randint(select_key(key, k), (), 0, S, dtype=jnp.int32))


def check_S(S: int) -> None:
  """Raise ``ValueError`` unless ``S`` is an integer >= 1."""
  if not isinstance(S, int) or isinstance(S, bool) or S < 1:
    raise ValueError(f"S must be an integer >= 1, got {S!r}")


def frozen(cls):
  """Decorator: a frozen, hashable dataclass (rules are static arguments of the engine)."""
  return dataclasses.dataclass(frozen=True)(cls)
