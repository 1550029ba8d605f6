"""A deep residual MLP classifier on scikit-learn's bundled digits, cut into ``S`` stages.

Model (flax.linen, ``n_layers`` layers, default 8)::

    layer 0              embed:  h = tanh(W_in x + b_in)                   x in [0, 1]^64
    layers 1..n_layers-2 block:  h = h + tanh(W h + b)                      (residual)
    layer n_layers-1     head:   logits = W_out h + b_out                   10 classes

Loss: mean cross-entropy (nats) of a minibatch of ``batch`` images drawn uniformly with
replacement; ``full_loss`` is the cross-entropy on the whole data set (1797 images of 8 x 8
pixels, scikit-learn's ``load_digits``, pixel values divided by 16). Stages are contiguous
groups of layers whose sizes differ by at most one (stage 0 holds the embedding, the last
stage the head); the model is a :class:`~rpd.problems.layered.Layered` problem.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rpd.problems.base import Problem, even_block_sizes
from rpd.problems.layered import Layered, LayerLayout, chain_loss, layer_layout


class _Embed(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, x_BxF):
    return jnp.tanh(nn.Dense(self.hidden)(x_BxF))


class _Block(nn.Module):
  hidden: int

  @nn.compact
  def __call__(self, h_BxH):
    init = nn.initializers.variance_scaling(0.5, "fan_in", "normal")
    return h_BxH + jnp.tanh(nn.Dense(self.hidden, kernel_init=init)(h_BxH))


class _Head(nn.Module):
  classes: int

  @nn.compact
  def __call__(self, h_BxH):
    return nn.Dense(self.classes)(h_BxH)


def _modules(F: int, hidden: int, classes: int, n_layers: int):
  return [_Embed(hidden)] + [_Block(hidden) for _ in range(n_layers - 2)] + [_Head(classes)]


@functools.lru_cache(maxsize=32)
def _layout(F: int, hidden: int, classes: int, n_layers: int, S: int) -> LayerLayout:
  stage_of = np.repeat(np.arange(S), even_block_sizes(n_layers, S))
  inputs = [jnp.zeros((1, F))] + [jnp.zeros((1, hidden))] * (n_layers - 1)
  return layer_layout(_modules(F, hidden, classes, n_layers), inputs, stage_of)


@struct.dataclass
class MLP(Problem, Layered):
  """Deep residual MLP classifier (see the module docstring).

  Leaves: ``X_NxF`` (features), ``y_N`` (integer labels). Everything else is static.
  """

  X_NxF: jax.Array
  y_N: jax.Array
  S: int = struct.field(pytree_node=False, default=1)
  block_sizes: tuple = struct.field(pytree_node=False, default=(1,))
  hidden: int = struct.field(pytree_node=False, default=32)
  classes: int = struct.field(pytree_node=False, default=10)
  n_layers: int = struct.field(pytree_node=False, default=8)
  batch: int = struct.field(pytree_node=False, default=32)
  name: str = struct.field(pytree_node=False, default="mlp")
  L: float | None = struct.field(pytree_node=False, default=None)
  f_star: float | None = struct.field(pytree_node=False, default=None)
  sigma2: float | None = struct.field(pytree_node=False, default=None)

  @property
  def layout(self) -> LayerLayout:
    return _layout(int(self.X_NxF.shape[1]), self.hidden, self.classes, self.n_layers, self.S)

  def _mods(self):
    return _modules(int(self.X_NxF.shape[1]), self.hidden, self.classes, self.n_layers)

  def init(self, key: jax.Array) -> jax.Array:
    """Flax initialisation of every layer (layer ``l`` from ``fold_in(key, l)``)."""
    dtype = jnp.zeros(()).dtype  # float64 when x64 is on
    params = []
    for l, mod in enumerate(self._mods()):
      x_in = jnp.zeros((1, self.X_NxF.shape[1] if l == 0 else self.hidden))
      p = mod.init(jax.random.fold_in(key, l), x_in)["params"]
      params.append(jax.tree_util.tree_map(lambda a: a.astype(dtype), p))
    return self.layout.flatten(params, self.D)

  def sample(self, key: jax.Array):
    """``batch`` images drawn uniformly with replacement: ``(X_BxF, y_B)``."""
    idx = jax.random.randint(key, (self.batch,), 0, self.X_NxF.shape[0])
    return self.X_NxF[idx], self.y_N[idx]

  def act_shape(self, b: int) -> tuple[int, ...]:
    return (b, self.hidden)

  def stage(self, s: int, w_D, a_in, batch):
    X_BxF, y_B = batch
    mods, lay = self._mods(), self.layout
    h = X_BxF.astype(w_D.dtype) if s == 0 else a_in
    for l in lay.stage_layers[s]:
      h = mods[l].apply({"params": lay.params(w_D, l)}, h)
    if s < self.S - 1:
      return h
    logp_BxC = jax.nn.log_softmax(h)
    return -jnp.mean(jnp.take_along_axis(logp_BxC, y_B[:, None], axis=1))

  def loss(self, x_SxD: jax.Array, batch) -> jax.Array:
    """Mean cross-entropy of the minibatch (the chain of the stage functions)."""
    return chain_loss(self, x_SxD, batch)

  def full_loss(self, x_SxD: jax.Array) -> jax.Array:
    """Cross-entropy on the whole data set."""
    return chain_loss(self, x_SxD, (self.X_NxF, self.y_N))


def make_mlp(S: int, *, hidden: int = 32, n_layers: int = 8, batch: int = 32,
             dtype=None) -> MLP:
  """The digits MLP with ``S`` stages (``1 <= S <= n_layers``).

  Args:
    S: stages.
    hidden: width of the hidden layers.
    n_layers: layers in all (embedding, ``n_layers - 2`` residual blocks, head); ``>= 2``.
    batch: images per stochastic gradient.
    dtype: dtype of the features (default: JAX's default float).

  Raises:
    ValueError: bad ``S`` or ``n_layers``.
  """
  if n_layers < 2:
    raise ValueError(f"mlp needs n_layers >= 2, got {n_layers}")
  if not 1 <= S <= n_layers:
    raise ValueError(f"mlp needs 1 <= S <= n_layers={n_layers}, got S={S}")
  from rpd.optional import require
  data = require("sklearn.datasets", "the mlp problem (scikit-learn's digits)").load_digits()
  X = jnp.asarray(data.data / 16.0, dtype or jnp.zeros(()).dtype)
  y = jnp.asarray(data.target, jnp.int32)
  bs = _layout(int(X.shape[1]), hidden, 10, n_layers, S).block_sizes
  return MLP(X_NxF=X, y_N=y, S=S, block_sizes=bs, hidden=hidden, classes=10,
             n_layers=n_layers, batch=batch)


def build(arg: str | None, S: int, **options) -> MLP:
  """Registry builder: ``mlp`` or ``mlp:digits`` (the only data set)."""
  import inspect
  if arg not in (None, "digits"):
    raise ValueError(f"unknown mlp data set {arg!r}; known: digits")
  unknown = set(options) - set(inspect.signature(make_mlp).parameters)
  if unknown:
    raise ValueError(f"unknown mlp option(s) {sorted(unknown)}")
  return make_mlp(S, **options)
