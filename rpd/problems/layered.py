"""Layered problems: a model that is a chain of ``S`` stages, one block of ``x_SxD`` each.

A layered problem exposes its per-stage function, so that a pipeline executor
(:mod:`rpd.pipeline`) can run stage ``s`` on device ``s`` alone::

    a_1 = stage(0, w_0, None, batch)             # embedding: reads the inputs of ``batch``
    a_{s+1} = stage(s, w_s, a_s, batch)          # 0 < s < S - 1
    loss = stage(S - 1, w_{S-1}, a_{S-1}, batch)  # head and loss: reads the targets

with ``w_s = x_SxD[s]`` (the padded block of stage ``s``) and activations ``a_s`` of shape
``act_shape(b)`` for a microbatch of ``b`` samples (dtype of the parameters). The composition
is the problem's loss: ``loss(x_SxD, batch) == chain_loss(problem, x_SxD, batch)`` (checked by
the tests of every layered problem). A batch is a pytree whose leaves all have the sample
axis first, so that a batch of ``M b`` samples splits into ``M`` microbatches of ``b``, and the
mean of the microbatch losses is the loss of the batch.

The layers are packed into stages by :func:`layer_layout`: each layer's flax parameter
tree, flattened leaf by leaf, is stored contiguously in its stage's row.
"""
from __future__ import annotations

import abc
import dataclasses
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp


class Layered(abc.ABC):
  """Mixin of a :class:`~rpd.problems.base.Problem` that is a chain of ``S`` stages."""

  @abc.abstractmethod
  def act_shape(self, b: int) -> tuple[int, ...]:
    """Shape of the activation passed between stages for a microbatch of ``b`` samples."""

  @abc.abstractmethod
  def stage(self, s: int, w_D: jax.Array, a_in, batch) -> jax.Array:
    """Stage ``s`` (a Python int): the next activation, or the mean loss if ``s = S - 1``.

    ``a_in`` is ignored by stage 0 (it embeds the inputs of ``batch``).
    """

  def batch_size(self, batch) -> int:
    """Samples in ``batch`` (the leading axis of its leaves)."""
    return int(jax.tree_util.tree_leaves(batch)[0].shape[0])


def chain_loss(problem: Layered, x_SxD: jax.Array, batch) -> jax.Array:
  """The loss computed stage by stage: ``stage(S-1, ..., stage(0, w_0, None, batch))``."""
  a = None
  for s in range(problem.S):
    a = problem.stage(s, x_SxD[s], a, batch)
  return a


def is_layered(problem: Any) -> bool:
  """Whether ``problem`` exposes per-stage functions (:class:`Layered`)."""
  return isinstance(problem, Layered)


@dataclasses.dataclass(frozen=True)
class LayerLayout:
  """Where each layer's parameters live in ``x_SxD``.

  Attributes:
    layers: per layer ``(stage, offset, treedef, shapes)``: the layer's leaves (in
      ``treedef`` order, with ``shapes``) are stored contiguously in row ``stage`` from
      ``offset``.
    block_sizes: real size of each stage's row.
    stage_layers: per stage, the indices of its layers (in order).
  """

  layers: tuple
  block_sizes: tuple
  stage_layers: tuple

  def params(self, w_D: jax.Array, l: int):
    """Flax parameter tree of layer ``l`` read from its stage's row ``w_D``."""
    _, off, treedef, shapes = self.layers[l]
    leaves = []
    for shape in shapes:
      n = math.prod(shape)
      leaves.append(w_D[off:off + n].reshape(shape))
      off += n
    return jax.tree_util.tree_unflatten(treedef, leaves)

  def flatten(self, params: Sequence, D: int) -> jax.Array:
    """Per-layer parameter trees -> padded ``x_SxD`` (inverse of :meth:`params`)."""
    S = len(self.block_sizes)
    rows = [[] for _ in range(S)]
    for (s, _, _, _), p in zip(self.layers, params):
      rows[s] += [jnp.ravel(a) for a in jax.tree_util.tree_leaves(p)]
    return jnp.stack([jnp.pad(jnp.concatenate(r), (0, D - n))
                      for r, n in zip(rows, self.block_sizes)])


def layer_layout(modules: Sequence, inputs: Sequence, stage_of: Sequence[int]) -> LayerLayout:
  """Pack the flax ``modules`` (layer ``l`` applied to ``inputs[l]``) into stages.

  Args:
    modules: flax linen modules, one per layer, in the order of the chain.
    inputs: an example input of each layer (only shapes and dtypes matter).
    stage_of: the stage of each layer (non-decreasing, from 0 to ``S - 1``).
  """
  S = int(stage_of[-1]) + 1
  entries, sizes = [], [0] * S
  members = [[] for _ in range(S)]
  for l, (mod, x_in) in enumerate(zip(modules, inputs)):
    shapes = jax.eval_shape(lambda m=mod, x=x_in: m.init(jax.random.key(0), x)["params"])
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    s = int(stage_of[l])
    entries.append((s, sizes[s], treedef, tuple(tuple(a.shape) for a in leaves)))
    sizes[s] += int(sum(math.prod(a.shape) for a in leaves))
    members[s].append(l)
  return LayerLayout(tuple(entries), tuple(sizes), tuple(tuple(m) for m in members))
