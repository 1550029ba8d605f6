"""Independent references for the pipeline executor, written from the update semantics only.

Nothing here reads a schedule, a tick table or the executor: the weights each microbatch's
forward and backward see, and when each update lands, are written from the schedules' papers:

Microbatch ``m`` is slice ``m mod M`` of the problem's sample ``m // M`` (the data; not under
test).

* synchronous (GPipe, 1F1B-flush, interleaved, looped BFS, ZB-*, Chimera, zb-auto, ZB-V,
  DualPipe-V): plain minibatch training, one update per batch with the mean of its ``M``
  microbatch gradients, each the plain ``jax.grad`` of the full model's loss;
* PipeDream (1F1B-RR, weight stashing; Narayanan et al. 2019): stage ``s`` of ``S`` admits
  ``S - s`` microbatches (1-based; ``S - 1 - s`` extra ones 0-based), so the forward of ``m``
  on stage ``s`` sees the updates of microbatches ``0 .. m - (S - s)`` (0-based:
  ``max(0, m - (S - 1 - s))`` updates), and its backward the same stashed version; the
  update of stage ``s`` by ``m`` lands right after its backward, in microbatch order;
* PipeMare (no stashing; Yang et al. 2021): forwards as PipeDream; the backward of ``m`` on
  stage ``s`` runs on the forward's stashed input activation but the *current* weights, which
  hold the updates of microbatches ``0 .. m - 1``;
* PipeDream-2BW (Narayanan et al. 2021): ``W^(t+1) = W^(t) - gamma opt(grad f(W^(t-1)))``,
  batch ``t`` reads ``W^(t-1)`` (the weights after batches ``0 .. t - 2``; ``W^(-1) = W^(0)``).

Optimizers in NumPy (float64): SGD ``u = g``; momentum ``v <- g + 0.9 v, u = v``; Adam with
``b1 = 0.9, b2 = 0.999, eps = 1e-8`` and bias correction, one state per block.
"""
from __future__ import annotations

import jax
import numpy as np

from rpd.engine import sample_key


class NumpyOpt:
  """One optimizer state per block; ``step(s, g, w)`` returns ``w - gamma u``."""

  def __init__(self, name: str, S: int, D: int, gamma: float, eps: float = 1e-8):
    self.name, self.gamma, self.eps = name, gamma, eps
    self.v = np.zeros((S, D))
    self.m = np.zeros((S, D))
    self.count = np.zeros(S, int)

  def step(self, s: int, g, w):
    g = np.asarray(g, np.float64)
    if self.name == "sgd":
      u = g
    elif self.name == "momentum":
      self.v[s] = g + 0.9 * self.v[s]
      u = self.v[s]
    elif self.name == "adam":
      b1, b2, eps = 0.9, 0.999, self.eps
      self.count[s] += 1
      self.m[s] = b1 * self.m[s] + (1 - b1) * g
      self.v[s] = b2 * self.v[s] + (1 - b2) * g * g
      mh = self.m[s] / (1 - b1 ** self.count[s])
      vh = self.v[s] / (1 - b2 ** self.count[s])
      u = mh / (np.sqrt(vh) + eps)
    else:
      raise ValueError(name)
    return np.asarray(w, np.float64) - self.gamma * u


def microbatch(problem, key, n: int, j: int, G: int):
  """Slice ``j`` of ``G`` of the problem's sample ``n`` (the data; not under test)."""
  full = problem.sample(sample_key(key, n))
  b = problem.batch_size(full) // G
  return jax.tree.map(lambda a: a[j * b:(j + 1) * b], full)


_GRADS: dict = {}


def _grad(problem):
  """``jax.grad`` of the full model's loss (one compiled function per problem)."""
  if id(problem) not in _GRADS:
    _GRADS[id(problem)] = (problem, jax.jit(jax.grad(problem.loss)))
  return _GRADS[id(problem)][1]


def _opt(opt, S, D, gamma):
  """``opt``: ``"sgd"``, ``"momentum"``, ``"adam"`` or ``("adam", eps)``."""
  if isinstance(opt, tuple):
    return NumpyOpt(opt[0], S, D, gamma, eps=opt[1])
  return NumpyOpt(opt, S, D, gamma)


def sync_reference(problem, x0, key, gamma, opt: str, M: int, batches: int):
  """Minibatch training: per batch, the mean of ``M`` plain microbatch gradients."""
  x = np.array(x0, np.float64)
  S, D = x.shape
  o, grad = _opt(opt, S, D, gamma), _grad(problem)
  for n in range(batches):
    g = np.mean([np.asarray(grad(x, microbatch(problem, key, n, j, M))) for j in range(M)], 0)
    x = np.stack([o.step(s, g[s], x[s]) for s in range(S)])
  return x


def pipedream_reference(problem, x0, key, gamma, opt: str, M: int, batches: int):
  """PipeDream (weight stashing): microbatch ``m`` reads stage ``s`` after
  ``max(0, m - (S - 1 - s))`` of its updates, forward and backward alike."""
  x0 = np.array(x0, np.float64)
  S, D = x0.shape
  o, grad = _opt(opt, S, D, gamma), _grad(problem)
  versions = [[x0[s]] for s in range(S)]
  for m in range(M * batches):
    point = np.stack([versions[s][max(0, m - (S - 1 - s))] for s in range(S)])
    g = np.asarray(grad(point, microbatch(problem, key, m // M, m % M, M)))
    for s in range(S):
      versions[s].append(o.step(s, g[s], versions[s][-1]))
  return np.stack([v[-1] for v in versions])


def pipemare_reference(problem, x0, key, gamma, opt: str, M: int, batches: int):
  """PipeMare (no stashing): forwards as PipeDream; the backward of ``m`` on stage ``s``
  uses the forward's input activation and the weights after ``m`` updates of stage ``s``."""
  x0 = np.array(x0, np.float64)
  S, D = x0.shape
  o = _opt(opt, S, D, gamma)
  versions = [[x0[s]] for s in range(S)]

  @jax.jit
  def gradient(fwd_w, bwd_w, batch):
    a, inputs = None, []
    for s in range(S):  # forward at the forward versions
      inputs.append(a)
      a = problem.stage(s, fwd_w[s], a, batch)
    g_out, grads = 1.0, [None] * S
    for s in reversed(range(S)):  # backward at the current versions, forward's inputs
      if s == 0:
        _, vjp = jax.vjp(lambda w: problem.stage(0, w, None, batch), bwd_w[s])
        (grads[s],) = vjp(g_out)
      else:
        _, vjp = jax.vjp(lambda w, x, s=s: problem.stage(s, w, x, batch), bwd_w[s], inputs[s])
        grads[s], g_out = vjp(g_out if s < S - 1 else jax.numpy.asarray(1.0, a.dtype))
    return grads

  for m in range(M * batches):
    batch = microbatch(problem, key, m // M, m % M, M)
    fwd_w = np.stack([versions[s][max(0, m - (S - 1 - s))] for s in range(S)])
    bwd_w = np.stack([versions[s][m] for s in range(S)])
    grads = gradient(fwd_w, bwd_w, batch)
    for s in range(S):
      versions[s].append(o.step(s, np.asarray(grads[s]), versions[s][-1]))
  return np.stack([v[-1] for v in versions])


def two_bw_reference(problem, x0, key, gamma, opt: str, M: int, batches: int):
  """PipeDream-2BW: batch ``t`` (``M`` microbatches, slices of sample ``t``) reads the weights
  after batches ``0 .. t - 2``; its mean gradient updates the newest weights."""
  x = np.array(x0, np.float64)
  S, D = x.shape
  o, grad = _opt(opt, S, D, gamma), _grad(problem)
  history = [x, x]  # W^(-1), W^(0)
  for t in range(batches):
    read = history[-2]
    g = np.mean([np.asarray(grad(read, microbatch(problem, key, t, j, M))) for j in range(M)], 0)
    history.append(np.stack([o.step(s, g[s], history[-1][s]) for s in range(S)]))
  return history[-1]
