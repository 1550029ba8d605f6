"""Layered problems: stage functions compose to the loss; transformer and digits MLP."""
import collections

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rpd.problems import get_problem
from rpd.problems.charlm import make_charlm
from rpd.problems.layered import chain_loss, is_layered
from rpd.problems.mlp import make_mlp
from rpd.problems.transformer import bundled_corpus, make_transformer, unigram_entropy

TINY = dict(n_chars=20_000, T=16, d_model=16, heads=2, batch=4, n_eval=8)


def test_charlm_stages_compose_to_its_loss():
  """charlm's loss scans the stacked blocks; the chain of its stage functions is separate."""
  p = make_charlm(4, hidden=16, n_layers=8, n_chains=8, length=256, n_eval=64)
  x = jax.jit(p.init)(jax.random.key(0))
  batch = p.sample(jax.random.key(1))
  assert is_layered(p)
  np.testing.assert_allclose(jax.jit(chain_loss)(p, x, batch), jax.jit(p.loss)(x, batch),
                             rtol=1e-10)


def test_mlp_matches_numpy_forward():
  p = make_mlp(4, hidden=8, n_layers=6, batch=16)
  x = jax.jit(p.init)(jax.random.key(0))
  X, y = p.sample(jax.random.key(1))
  lay = p.layout
  w = [jax.tree.map(np.asarray, lay.params(x[lay.layers[l][0]], l)) for l in range(6)]
  h = np.tanh(np.asarray(X) @ w[0]["Dense_0"]["kernel"] + w[0]["Dense_0"]["bias"])
  for l in range(1, 5):
    h = h + np.tanh(h @ w[l]["Dense_0"]["kernel"] + w[l]["Dense_0"]["bias"])
  z = h @ w[5]["Dense_0"]["kernel"] + w[5]["Dense_0"]["bias"]
  z = z - z.max(axis=1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
  ref = -np.mean(logp[np.arange(len(y)), np.asarray(y)])
  np.testing.assert_allclose(jax.jit(p.loss)(x, (X, y)), ref, rtol=1e-10)
  # The same model cut into 1 or 4 stages: the same flat parameters and loss.
  q = make_mlp(1, hidden=8, n_layers=6, batch=16)
  xq = jax.jit(q.init)(jax.random.key(0))
  np.testing.assert_array_equal(q.flat(xq), p.flat(x))
  np.testing.assert_allclose(jax.jit(q.loss)(xq, (X, y)), ref, rtol=1e-10)


def test_transformer_is_causal_and_independent_of_the_cut():
  p = make_transformer(2, blocks_per_stage=1, **TINY)
  q = make_transformer(1, blocks_per_stage=2, **TINY)
  x, xq = jax.jit(p.init)(jax.random.key(0)), jax.jit(q.init)(jax.random.key(0))
  np.testing.assert_array_equal(p.flat(x), q.flat(xq))
  win = p.sample(jax.random.key(1))
  # Causal attention: changing character t changes the activations at positions >= t only.
  t = 9
  win2 = win.at[:, t].set((win[:, t] + 1) % p.V)
  first = jax.jit(lambda w, b: p.stage(0, w, None, b))
  a, a2 = first(x[0], win), first(x[0], win2)
  assert np.allclose(a[:, :t], a2[:, :t], rtol=0, atol=1e-12)
  assert not np.allclose(a[:, t:], a2[:, t:])


def test_transformer_data_and_registry(tmp_path):
  p = get_problem("transformer", 2, **TINY)
  text = bundled_corpus()[:TINY["n_chars"]]
  counts = collections.Counter(text)
  assert p.V == len(counts)
  # Unigram entropy of the whole text (the training text is 90% of it: close, not equal).
  n = sum(counts.values())
  H = -sum(c / n * np.log(c / n) for c in counts.values())
  assert abs(p.unigram_entropy - H) < 0.05
  assert unigram_entropy(np.array([0, 0, 1, 1])) == pytest.approx(np.log(2))
  f = tmp_path / "t.txt"
  f.write_text("abcab" * 200)
  pt = get_problem(f"transformer:{f}", 2, T=8, d_model=8, heads=2)
  assert pt.V == 3 and np.isfinite(jax.jit(pt.full_loss)(jax.jit(pt.init)(jax.random.key(0))))
  with pytest.raises(ValueError, match="unknown transformer option"):
    get_problem("transformer", 2, widht=3)
  with pytest.raises(ValueError, match="iris"):
    get_problem("mlp:iris", 2)
  assert get_problem("mlp:digits", 2, hidden=4).d > 0
