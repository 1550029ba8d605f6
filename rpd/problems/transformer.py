"""A small decoder-only transformer language model on characters, cut into ``S`` stages.

Model (flax.linen; ``n_blocks = blocks_per_stage * S`` blocks)::

    embed (stage 0):  h = E[x_t] + P[t]                                  (B, T, d_model)
    block (pre-LN):   h = h + MHA_causal(LN(h));  h = h + W_2 gelu(W_1 LN(h))
    head (stage S-1): logits = W_out LN(h)                               (B, T, V)

Loss: next-character cross-entropy in nats, averaged over the ``T`` positions of ``batch``
windows of ``T + 1`` characters at uniform random positions of the training text.
Stage ``s`` holds blocks ``s * blocks_per_stage ...``, stage 0 also the embedding and the last
stage the head; each stage's parameters form one row of ``x_SxD``
(:class:`~rpd.problems.layered.Layered`). The model depends on ``S`` only through the number
of blocks.

Data: the bundled corpus is real English text shipped with Python itself: the documentation
topics of ``pydoc_data.topics`` (the text of ``help('TOPIC')``, ~465k characters, sorted by
topic and joined), truncated to ``n_chars``; or a user's UTF-8 text file (``text=PATH``). The
alphabet is the set of characters of the text; every 10th chunk of ``10 (T + 1)`` characters
is held out and gives a fixed evaluation set of ``n_eval`` windows (``full_loss``). :func:`unigram_entropy` is the entropy of
the character frequencies of the training text: the loss of the best model that ignores the
context, the baseline a language model must beat.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rpd.problems.base import Problem
from rpd.problems.layered import Layered, LayerLayout, chain_loss, layer_layout


class _Embed(nn.Module):
  V: int
  T: int
  d_model: int

  @nn.compact
  def __call__(self, tokens_BxT):
    init = nn.initializers.normal(0.02)
    tok = nn.Embed(self.V, self.d_model, embedding_init=init)(tokens_BxT)
    pos = self.param("pos", init, (self.T, self.d_model))
    return tok + pos[None, :tokens_BxT.shape[1]]


class _Block(nn.Module):
  d_model: int
  heads: int
  n_blocks: int

  @nn.compact
  def __call__(self, h_BxTxE):
    T = h_BxTxE.shape[1]
    out_init = nn.initializers.normal(0.02 / np.sqrt(2 * self.n_blocks))
    mask = nn.make_causal_mask(jnp.ones((1, T), jnp.int32))
    y = nn.LayerNorm()(h_BxTxE)
    y = nn.MultiHeadDotProductAttention(num_heads=self.heads, out_kernel_init=out_init,
                                        kernel_init=nn.initializers.normal(0.02))(y, y,
                                                                                 mask=mask)
    h_BxTxE = h_BxTxE + y
    y = nn.gelu(nn.Dense(4 * self.d_model, kernel_init=nn.initializers.normal(0.02))(
        nn.LayerNorm()(h_BxTxE)))
    return h_BxTxE + nn.Dense(self.d_model, kernel_init=out_init)(y)


class _Head(nn.Module):
  V: int

  @nn.compact
  def __call__(self, h_BxTxE):
    return nn.Dense(self.V, kernel_init=nn.initializers.normal(0.02))(nn.LayerNorm()(h_BxTxE))


def _modules(V, T, d_model, heads, n_blocks):
  return ([_Embed(V, T, d_model)] + [_Block(d_model, heads, n_blocks) for _ in range(n_blocks)]
          + [_Head(V)])


@functools.lru_cache(maxsize=32)
def _layout(V, T, d_model, heads, blocks_per_stage, S) -> LayerLayout:
  n_blocks = blocks_per_stage * S
  stage_of = [0] + [b // blocks_per_stage for b in range(n_blocks)] + [S - 1]
  h = jnp.zeros((1, T, d_model))
  inputs = [jnp.zeros((1, T), jnp.int32)] + [h] * (n_blocks + 1)
  return layer_layout(_modules(V, T, d_model, heads, n_blocks), inputs, stage_of)


@struct.dataclass
class Transformer(Problem, Layered):
  """Decoder-only character transformer (see the module docstring).

  Leaves: ``train_N`` (training text as character ids), ``eval_ExT1`` (evaluation windows of
  ``T + 1`` characters). Everything else is static.
  """

  train_N: jax.Array
  eval_ExT1: jax.Array
  S: int = struct.field(pytree_node=False, default=1)
  block_sizes: tuple = struct.field(pytree_node=False, default=(1,))
  V: int = struct.field(pytree_node=False, default=2)
  T: int = struct.field(pytree_node=False, default=64)
  d_model: int = struct.field(pytree_node=False, default=64)
  heads: int = struct.field(pytree_node=False, default=4)
  blocks_per_stage: int = struct.field(pytree_node=False, default=1)
  batch: int = struct.field(pytree_node=False, default=16)
  unigram_entropy: float = struct.field(pytree_node=False, default=0.0)
  name: str = struct.field(pytree_node=False, default="transformer")
  L: float | None = struct.field(pytree_node=False, default=None)
  f_star: float | None = struct.field(pytree_node=False, default=None)
  sigma2: float | None = struct.field(pytree_node=False, default=None)

  @property
  def layout(self) -> LayerLayout:
    return _layout(self.V, self.T, self.d_model, self.heads, self.blocks_per_stage, self.S)

  def _mods(self):
    return _modules(self.V, self.T, self.d_model, self.heads, self.blocks_per_stage * self.S)

  def init(self, key: jax.Array) -> jax.Array:
    """Flax initialisation of every layer (layer ``l`` from ``fold_in(key, l)``)."""
    dtype = jnp.zeros(()).dtype
    params = []
    for l, mod in enumerate(self._mods()):
      x_in = (jnp.zeros((1, self.T), jnp.int32) if l == 0
              else jnp.zeros((1, self.T, self.d_model)))
      p = mod.init(jax.random.fold_in(key, l), x_in)["params"]
      params.append(jax.tree_util.tree_map(lambda a: a.astype(dtype), p))
    return self.layout.flatten(params, self.D)

  def sample(self, key: jax.Array):
    """``batch`` windows of ``T + 1`` characters at uniform positions: ``(B, T + 1)``."""
    pos = jax.random.randint(key, (self.batch,), 0, self.train_N.shape[0] - self.T - 1)
    return self.train_N[pos[:, None] + jnp.arange(self.T + 1)]

  def act_shape(self, b: int) -> tuple[int, ...]:
    return (b, self.T, self.d_model)

  def stage(self, s: int, w_D, a_in, batch):
    win_BxT1 = batch
    mods, lay = self._mods(), self.layout
    h = win_BxT1[:, :-1] if s == 0 else a_in
    for l in lay.stage_layers[s]:
      h = mods[l].apply({"params": lay.params(w_D, l)}, h)
    if s < self.S - 1:
      return h
    logp_BxTxV = jax.nn.log_softmax(h.astype(w_D.dtype))
    return -jnp.mean(jnp.take_along_axis(logp_BxTxV, win_BxT1[:, 1:, None], axis=2))

  def loss(self, x_SxD: jax.Array, batch) -> jax.Array:
    """Mean next-character cross-entropy (nats) of the windows (the chain of the stages)."""
    return chain_loss(self, x_SxD, batch)

  def full_loss(self, x_SxD: jax.Array) -> jax.Array:
    """Cross-entropy on the fixed evaluation windows (nats)."""
    return chain_loss(self, x_SxD, self.eval_ExT1)


@functools.lru_cache(maxsize=1)
def bundled_corpus() -> str:
  """The bundled corpus: Python's documentation topics (``pydoc_data.topics``), joined."""
  from pydoc_data.topics import topics
  return "\n\n".join(topics[k] for k in sorted(topics))


def unigram_entropy(ids: np.ndarray) -> float:
  """Entropy (nats) of the character frequencies: ``-sum_c p_c log p_c``."""
  counts = np.bincount(np.asarray(ids).ravel())
  p = counts[counts > 0] / counts.sum()
  return float(-(p * np.log(p)).sum())


def make_transformer(S: int, *, text: str | None = None, n_chars: int = 200_000, T: int = 64,
                     d_model: int = 64, heads: int = 4, blocks_per_stage: int = 1,
                     batch: int = 16, n_eval: int = 64) -> Transformer:
  """The character transformer LM with ``S`` stages.

  Args:
    S: stages (``>= 1``); the model has ``blocks_per_stage * S`` blocks.
    text: path of a UTF-8 text file (default: the bundled corpus, :func:`bundled_corpus`).
    n_chars: characters of the bundled corpus used (its first ``n_chars``).
    T: context length; d_model, heads: width and attention heads (``heads`` divides
      ``d_model``); blocks_per_stage: transformer blocks per stage.
    batch: windows per stochastic gradient.
    n_eval: evaluation windows (from the held-out chunks).

  Raises:
    ValueError: bad sizes or an unreadable or too short text file.
  """
  if S < 1 or blocks_per_stage < 1:
    raise ValueError(f"transformer needs S >= 1 and blocks_per_stage >= 1, got S={S}, "
                     f"blocks_per_stage={blocks_per_stage}")
  if d_model % heads:
    raise ValueError(f"heads={heads} must divide d_model={d_model}")
  if text is None:
    chars = bundled_corpus()[:n_chars]
  else:
    from rpd.problems.charlm import read_text
    chars = read_text(text)
  if len(chars) < 20 * (T + 1):
    raise ValueError(f"text {text or 'corpus'!r} too short ({len(chars)} characters) for T={T}")
  vocab = sorted(set(chars))
  index = {c: i for i, c in enumerate(vocab)}
  ids = np.array([index[c] for c in chars], dtype=np.int32)
  # Every 10th chunk of 10 (T + 1) characters is held out: the evaluation windows come from
  # the same text as the training windows, but never overlap them.
  L = 10 * (T + 1)
  chunks = [ids[i:i + L] for i in range(0, len(ids), L)]
  held = [c for i, c in enumerate(chunks) if i % 10 == 9 and len(c) == L]
  train = np.concatenate([c for i, c in enumerate(chunks) if i % 10 != 9])
  if not held:
    held = [ids[-L:]]
  starts = [(i, o) for i in range(len(held)) for o in range(0, L - T, T + 1)]
  pick = np.linspace(0, len(starts) - 1, min(n_eval, len(starts))).astype(int)
  ev = np.stack([held[starts[k][0]][starts[k][1]:starts[k][1] + T + 1] for k in pick])
  bs = _layout(len(vocab), T, d_model, heads, blocks_per_stage, S).block_sizes
  return Transformer(train_N=jnp.asarray(train), eval_ExT1=jnp.asarray(ev), S=S,
                     block_sizes=bs, V=len(vocab), T=T, d_model=d_model, heads=heads,
                     blocks_per_stage=blocks_per_stage, batch=batch,
                     unigram_entropy=unigram_entropy(train))


def build(arg: str | None, S: int, **options) -> Transformer:
  """Registry builder: ``transformer`` (bundled corpus) or ``transformer:TEXT_FILE``."""
  import inspect
  unknown = set(options) - set(inspect.signature(make_transformer).parameters) - {"text"}
  if unknown:
    raise ValueError(f"unknown transformer option(s) {sorted(unknown)}")
  text = options.pop("text", None)
  return make_transformer(S, text=arg or text, **options)
