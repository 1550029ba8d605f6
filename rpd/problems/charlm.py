"""A small character-level language model whose layers are split into ``S`` pipeline stages.

Model (flax.linen, one module per layer, ``n_layers`` layers in all, default 16)::

    layer 0              embed:  h = gelu(W_in concat(E[x_{t-C}], ..., E[x_{t-1}]) + b_in)
    layers 1..n_layers-2 block:  h = h + W_2 gelu(W_1 LN(h) + b_1) + b_2       (residual MLP)
    layer n_layers-1     head:   logits = W_out LN(h) + b_out

over a context window of ``C`` characters (an MLP language model, Bengio et al. 2003, with
residual blocks); ``LN`` is a parameter-free layer norm. The loss is the next-character
cross-entropy in nats, averaged over a minibatch of ``batch`` windows.

Stages = blocks. The layers are cut into ``S`` contiguous groups whose sizes differ by at most
one (so any ``1 <= S <= n_layers`` works, and ``S`` in {1, 2, 4, 8, 16} divides the default
16 layers evenly): stage 0 holds the embedding (and the first blocks), the last stage the head.
Each stage's parameters, flattened leaf by leaf in layer order, form one row of ``x_SxD``
padded with zeros to ``D``; concatenating the rows without padding gives the same flat vector
for every ``S``, so the model and its loss do not depend on ``S`` (checked by the tests).

Data. The default corpus is drawn from a bundled random sparse Markov source
(:class:`rpd.problems.markov_text.MarkovSource`) with a known entropy rate ``h``: ``f_star = h``
is the best achievable expected loss (the window ``C`` covers the source's order), so every
figure can show the gap to it. The training corpus is ``n_chains`` independent stationary
sequences; a sample is ``batch`` windows at uniform random positions. ``full_loss`` is the
cross-entropy on a fixed evaluation set of ``n_eval`` independent stationary windows (another
seed), an unbiased estimate of the population loss. With ``text=PATH`` the model trains on a
user's text file instead (alphabet = its distinct characters; the last 10% of the file gives
the evaluation windows; ``f_star = None``).
"""
from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rpd.problems.base import Problem, even_block_sizes
from rpd.problems.layered import Layered
from rpd.problems.markov_text import MarkovSource


def _ln(h):
  """Parameter-free layer norm over the last axis."""
  mu = jnp.mean(h, axis=-1, keepdims=True)
  var = jnp.var(h, axis=-1, keepdims=True)
  return (h - mu) * jax.lax.rsqrt(var + 1e-5)


class Embed(nn.Module):
  """Layer 0: character embeddings of the window, concatenated, then a dense layer."""

  V: int
  emb: int
  hidden: int

  @nn.compact
  def __call__(self, tokens_BxC):
    e_BxCxE = nn.Embed(self.V, self.emb, embedding_init=nn.initializers.normal(1.0))(tokens_BxC)
    e_BxCE = e_BxCxE.reshape(e_BxCxE.shape[0], -1)
    return nn.gelu(nn.Dense(self.hidden)(e_BxCE))


class ResBlock(nn.Module):
  """A residual MLP block ``h + W_2 gelu(W_1 LN(h) + b_1) + b_2``."""

  hidden: int
  n_blocks: int

  @nn.compact
  def __call__(self, h_BxH):
    y = nn.gelu(nn.Dense(2 * self.hidden)(_ln(h_BxH)))
    out_init = nn.initializers.variance_scaling(1.0 / max(self.n_blocks, 1), "fan_in", "normal")
    return h_BxH + nn.Dense(self.hidden, kernel_init=out_init)(y)


class Head(nn.Module):
  """Last layer: logits over the alphabet."""

  V: int

  @nn.compact
  def __call__(self, h_BxH):
    return nn.Dense(self.V)(_ln(h_BxH))


def _layers(V: int, C: int, emb: int, hidden: int, n_layers: int) -> list[nn.Module]:
  n_blocks = n_layers - 2
  return ([Embed(V, emb, hidden)] + [ResBlock(hidden, n_blocks) for _ in range(n_blocks)]
          + [Head(V)])


@dataclasses.dataclass(frozen=True)
class _Layout:
  """Static description of where each layer's parameters live in ``x_SxD``.

  ``layers[l] = (stage, offset, treedef, shapes)``: layer ``l``'s leaves (in ``treedef``
  order, with ``shapes``) are stored contiguously in row ``stage`` from ``offset``.
  """

  layers: tuple
  block_sizes: tuple


@functools.lru_cache(maxsize=32)
def _layout(V: int, C: int, emb: int, hidden: int, n_layers: int, S: int) -> _Layout:
  mods = _layers(V, C, emb, hidden, n_layers)
  groups = even_block_sizes(n_layers, S)
  stage_of = np.repeat(np.arange(S), groups)
  h = jnp.zeros((1, hidden))
  entries, sizes = [], [0] * S
  for l, mod in enumerate(mods):
    x_in = jnp.zeros((1, C), jnp.int32) if l == 0 else h
    shapes = jax.eval_shape(lambda m=mod, x=x_in: m.init(jax.random.key(0), x)["params"])
    leaves, treedef = jax.tree_util.tree_flatten(shapes)
    s = int(stage_of[l])
    entries.append((s, sizes[s], treedef, tuple(tuple(a.shape) for a in leaves)))
    sizes[s] += int(sum(math.prod(a.shape) for a in leaves))
  return _Layout(tuple(entries), tuple(sizes))


@functools.lru_cache(maxsize=32)
def _block_gather_index(V, C, emb, hidden, n_layers, S) -> np.ndarray:
  """``idx[b, p]``: index in ``x_SxD.reshape(-1)`` of parameter ``p`` of residual block ``b``."""
  lay = _layout(V, C, emb, hidden, n_layers, S)
  D = max(lay.block_sizes)
  P = int(sum(math.prod(sh) for sh in lay.layers[1][3]))
  return np.stack([s * D + off + np.arange(P) for s, off, _, _ in lay.layers[1:-1]])


@struct.dataclass
class CharLM(Problem, Layered):
  """Character-level MLP language model split into ``S`` stages (see the module docstring).

  Leaves: ``train_NxT`` (training corpus, ``N`` sequences of length ``T``), ``eval_ctx_ExC``
  and ``eval_next_E`` (evaluation windows). Everything else is static.
  """

  train_NxT: jax.Array
  eval_ctx_ExC: jax.Array
  eval_next_E: jax.Array
  S: int = struct.field(pytree_node=False, default=1)
  block_sizes: tuple = struct.field(pytree_node=False, default=(1,))
  V: int = struct.field(pytree_node=False, default=16)
  C: int = struct.field(pytree_node=False, default=8)
  emb: int = struct.field(pytree_node=False, default=8)
  hidden: int = struct.field(pytree_node=False, default=32)
  n_layers: int = struct.field(pytree_node=False, default=16)
  batch: int = struct.field(pytree_node=False, default=32)
  name: str = struct.field(pytree_node=False, default="charlm")
  L: float | None = struct.field(pytree_node=False, default=None)
  f_star: float | None = struct.field(pytree_node=False, default=None)
  sigma2: float | None = struct.field(pytree_node=False, default=None)

  @property
  def layout(self) -> _Layout:
    return _layout(self.V, self.C, self.emb, self.hidden, self.n_layers, self.S)

  def _modules(self):
    return _layers(self.V, self.C, self.emb, self.hidden, self.n_layers)

  def unflatten(self, x_SxD: jax.Array) -> list:
    """Per-layer flax parameter trees from ``x_SxD``."""
    return [self._layer_params(x_SxD, l) for l in range(len(self.layout.layers))]

  def flatten(self, params: list) -> jax.Array:
    """Inverse of :meth:`unflatten`: per-layer trees -> padded ``x_SxD``."""
    rows = [[] for _ in range(self.S)]
    for (s, _, _, _), p in zip(self.layout.layers, params):
      rows[s] += [jnp.ravel(a) for a in jax.tree_util.tree_leaves(p)]
    D = self.D
    return jnp.stack([jnp.pad(jnp.concatenate(r), (0, D - r_len))
                      for r, r_len in zip(rows, self.block_sizes)])

  def logits(self, x_SxD: jax.Array, tokens_BxC: jax.Array) -> jax.Array:
    """Next-character logits ``(B, V)`` for windows ``tokens_BxC``.

    The residual blocks share one shape, so their parameters are gathered from ``x_SxD``
    into a stacked array and applied with ``lax.scan`` (one compiled block body, whatever
    ``n_layers`` and ``S``).
    """
    mods = self._modules()
    lay = self.layout.layers
    h = mods[0].apply({"params": self._layer_params(x_SxD, 0)}, tokens_BxC)
    if self.n_layers > 2:
      idx_NxP = _block_gather_index(self.V, self.C, self.emb, self.hidden, self.n_layers,
                                    self.S)
      stacked_NxP = x_SxD.reshape(-1)[idx_NxP]
      _, _, treedef, shapes = lay[1]
      leaves, off = [], 0
      for shape in shapes:
        n = math.prod(shape)
        leaves.append(stacked_NxP[:, off:off + n].reshape((-1,) + shape))
        off += n
      stacked = jax.tree_util.tree_unflatten(treedef, leaves)
      block = mods[1]
      h, _ = jax.lax.scan(lambda hh, p: (block.apply({"params": p}, hh), None), h, stacked)
    return mods[-1].apply({"params": self._layer_params(x_SxD, len(lay) - 1)}, h)

  def _layer_params(self, x_SxD, l):
    s, off, treedef, shapes = self.layout.layers[l]
    leaves = []
    for shape in shapes:
      n = math.prod(shape)
      leaves.append(x_SxD[s, off:off + n].reshape(shape))
      off += n
    return jax.tree_util.tree_unflatten(treedef, leaves)

  def act_shape(self, b: int) -> tuple[int, ...]:
    return (b, self.hidden)

  def stage(self, s: int, w_D, a_in, batch):
    """Stage ``s`` alone (:class:`~rpd.problems.layered.Layered`): its layers in order.

    Stage 0 embeds the windows of ``batch = (tokens_BxC, next_B)``; the last stage returns
    the mean cross-entropy. The chain of the stages equals :meth:`loss` (tested; the loss
    itself scans the stacked residual blocks instead).
    """
    tokens_BxC, next_B = batch
    mods = self._modules()
    h = tokens_BxC if s == 0 else a_in
    for l, (st, off, treedef, shapes) in enumerate(self.layout.layers):
      if st != s:
        continue
      leaves = []
      for shape in shapes:
        n = math.prod(shape)
        leaves.append(w_D[off:off + n].reshape(shape))
        off += n
      h = mods[l].apply({"params": jax.tree_util.tree_unflatten(treedef, leaves)}, h)
    if s < self.S - 1:
      return h
    logp_BxV = jax.nn.log_softmax(h.astype(w_D.dtype))
    return -jnp.mean(jnp.take_along_axis(logp_BxV, next_B[:, None], axis=1))

  def _xent(self, x_SxD, tokens_BxC, next_B):
    logp_BxV = jax.nn.log_softmax(self.logits(x_SxD, tokens_BxC).astype(x_SxD.dtype))
    return -jnp.mean(jnp.take_along_axis(logp_BxV, next_B[:, None], axis=1))

  def init(self, key: jax.Array) -> jax.Array:
    """Random flax initialisation of every layer (a function of ``key``), as ``x_SxD``."""
    params, h = [], jnp.zeros((1, self.hidden))
    dtype = jnp.zeros(()).dtype  # float64 when x64 is on
    for l, mod in enumerate(self._modules()):
      x_in = jnp.zeros((1, self.C), jnp.int32) if l == 0 else h
      p = mod.init(jax.random.fold_in(key, l), x_in)["params"]
      params.append(jax.tree_util.tree_map(lambda a: a.astype(dtype), p))
    return self.flatten(params)

  def sample(self, key: jax.Array):
    """``batch`` windows at uniform positions of uniform training sequences."""
    N, T = self.train_NxT.shape
    k1, k2 = jax.random.split(key)
    seq = jax.random.randint(k1, (self.batch,), 0, N)
    pos = jax.random.randint(k2, (self.batch,), 0, T - self.C)
    idx = pos[:, None] + jnp.arange(self.C + 1)
    win = self.train_NxT[seq[:, None], idx]
    return win[:, :self.C], win[:, self.C]

  def loss(self, x_SxD: jax.Array, batch) -> jax.Array:
    """Mean next-character cross-entropy (nats) on the minibatch."""
    tokens_BxC, next_B = batch
    return self._xent(x_SxD, tokens_BxC, next_B)

  def full_loss(self, x_SxD: jax.Array) -> jax.Array:
    """Cross-entropy on the fixed evaluation set (nats)."""
    return self._xent(x_SxD, self.eval_ctx_ExC, self.eval_next_E)


def _eval_windows(seqs_NxT: np.ndarray, C: int, n_eval: int):
  """Up to ``n_eval`` windows ``(context, next)`` evenly spread over the sequences."""
  N, T = seqs_NxT.shape
  per = max(1, -(-n_eval // N))
  starts = np.linspace(0, T - C - 1, per).astype(int)
  ctx = np.stack([seqs_NxT[:, p:p + C] for p in starts], axis=1).reshape(-1, C)[:n_eval]
  nxt = np.stack([seqs_NxT[:, p + C] for p in starts], axis=1).reshape(-1)[:n_eval]
  return ctx, nxt


def read_text(path: str, C: int = 8) -> str:
  """The text of ``path`` (UTF-8), checked before any training.

  A corpus must hold at least ``20 (C + 1)`` characters (the last 10% is the evaluation set,
  which needs windows of ``C + 1``) and at least two distinct characters (a text of one
  repeated character has a one-symbol vocabulary: nothing to predict, the loss is 0 at once).

  Raises:
    ValueError: unreadable, not UTF-8, too short or a single repeated character.
  """
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ValueError(f"cannot read text file {path!r}: {e}") from None
  if len(text) < 20 * (C + 1):
    raise ValueError(f"text file {path!r} too short ({len(text)} characters; need at least "
                     f"{20 * (C + 1)} for a context window C={C})")
  if len(set(text)) < 2:
    raise ValueError(f"text file {path!r} is one repeated character {text[0]!r}: nothing to "
                     "predict")
  return text


def make_charlm(S: int, *, text: str | None = None, V: int = 16, order: int = 2,
                branching: int = 3, C: int = 8, emb: int = 8, hidden: int = 32,
                n_layers: int = 16, batch: int = 32, n_chains: int = 64, length: int = 2048,
                n_eval: int = 2048, seed: int = 0) -> CharLM:
  """Build the character LM problem.

  Args:
    S: number of stages (``1 <= S <= n_layers``).
    text: path of a UTF-8 text file to train on instead of the Markov source.
    V, order, branching: the Markov source (alphabet, order, favoured successors).
    C: context window (``>= order``).
    emb, hidden: embedding and hidden widths.
    n_layers: layers in all (embedding + ``n_layers - 2`` residual blocks + head).
    batch: windows per stochastic gradient.
    n_chains, length: training corpus from the source (``n_chains * length`` symbols).
    n_eval: evaluation windows.
    seed: seed of the source's table (``seed``), training corpus (``seed + 1``) and
      evaluation set (``seed + 2``).

  Returns:
    a :class:`CharLM`.

  Raises:
    ValueError: for a bad ``S``, window or text file.
  """
  if not 1 <= S <= n_layers:
    raise ValueError(f"charlm needs 1 <= S <= n_layers={n_layers}, got S={S}")
  if n_layers < 2:
    raise ValueError(f"charlm needs n_layers >= 2, got {n_layers}")
  if text is None:
    src = MarkovSource(V=V, order=order, branching=branching, seed=seed)
    if C < order:
      raise ValueError(f"context window C={C} must cover the source order {order}")
    train = src.sample(n_chains, length, seed + 1)
    ev = src.sample(n_eval, C + 1, seed + 2)
    ctx, nxt = ev[:, :C], ev[:, C]
    f_star = src.entropy_rate
  else:
    chars = read_text(text, C)
    vocab = sorted(set(chars))
    V = len(vocab)
    index = {c: i for i, c in enumerate(vocab)}
    ids = np.array([index[c] for c in chars], dtype=np.int32)
    cut = int(0.9 * len(ids))
    train = ids[None, :cut]
    ctx, nxt = _eval_windows(ids[None, cut:], C, n_eval)
    f_star = None
  bs = _layout(V, C, emb, hidden, n_layers, S).block_sizes
  return CharLM(train_NxT=jnp.asarray(train), eval_ctx_ExC=jnp.asarray(ctx),
                eval_next_E=jnp.asarray(nxt), S=S, block_sizes=bs, V=V, C=C, emb=emb,
                hidden=hidden, n_layers=n_layers, batch=batch, f_star=f_star)
