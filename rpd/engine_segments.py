"""Segmented runs of the engine: the same steps, a record at a time, the carry kept on the
device between calls (for ``rpd train``'s progress bar and Ctrl-C; see :func:`rpd.engine.run`).
"""
from __future__ import annotations

import functools

import numpy as np
import jax
from jax.sharding import PartitionSpec as P

from rpd.engine_context import AXIS
from rpd.engine_core import (_check_K, _context, _init_carry, _metric_dict, _record, _steps,
                             bind, on_mesh)

# Segmented runs: the same steps, a record at a time, the carry kept between calls. Under
# shard_map every leaf of the carry gets a leading device axis (sharded over it).


def _dev_in(tree):
  return jax.tree.map(lambda a: a[0], tree)


def _dev_out(tree):
  return jax.tree.map(lambda a: a[None], tree)


@functools.partial(jax.jit, static_argnames=("rule", "tx", "track", "instrument", "mesh"))
def _start_jit(problem, x0, gamma, key, *, rule, tx, track, instrument, mesh):
  def f(problem, x0_loc, theta, key, n_dev):
    rule_, gamma = bind(rule, theta)
    ctx = _context(problem, rule_, tx, gamma, n_dev, track)
    carry = _init_carry(ctx, rule_, x0_loc, key)
    return (carry if n_dev is None else _dev_out(carry)), _record(ctx, rule_, carry, key)
  return on_mesh(f, mesh, (problem, x0, gamma, key), (P(), P(AXIS), P(), P()),
                 (P(AXIS), P()))


@functools.partial(jax.jit, static_argnames=("rule", "tx", "inner", "record", "track",
                                             "instrument", "mesh"), donate_argnames=("carry",))
def _segment_jit(problem, carry, gamma, key, *, rule, tx, inner, record, track, instrument,
                 mesh):
  def f(problem, carry, theta, key, n_dev):
    rule_, gamma = bind(rule, theta)
    ctx = _context(problem, rule_, tx, gamma, n_dev, track)
    carry = carry if n_dev is None else _dev_in(carry)
    carry, outs = _steps(ctx, rule_, key, carry, inner, instrument)
    rec = _record(ctx, rule_, carry, key) if record else None
    return (carry if n_dev is None else _dev_out(carry)), rec, outs
  out_specs = (P(AXIS), (P(), P()) if record else None, (P(), P()) if instrument else None)
  return on_mesh(f, mesh, (problem, carry, gamma, key), (P(), P(AXIS), P(), P()), out_specs)


def _chunk(inner: int) -> int:
  """Steps per segment: about a sixteenth of a record interval (a divisor of it)."""
  target = max(1, inner // 16)
  c = max(d for d in range(1, target + 1) if inner % d == 0)
  return c if c * 64 >= inner else inner


def run_segmented(problem, rule, tx, K, record_every, track, instrument, mesh, x0, gamma, key,
                   callback):
  """The run in segments of about a sixteenth of a record interval (two compiled programs:
  steps only, steps and a record); ``callback(k, metrics_so_far)`` may stop it (``True``)."""
  n_rec, inner = _check_K(rule, K, record_every)
  chunk = _chunk(inner)
  kw = dict(rule=rule, tx=tx, track=track, instrument=instrument, mesh=mesh)
  carry, (v0, k0) = _start_jit(problem, x0, gamma, key, **kw)
  vals, ks, outs = [np.asarray(v0)], [int(k0)], []
  stopped, k_done = False, 0
  ups = rule.updates_per_step
  for _ in range(n_rec):
    for c in range(inner // chunk):
      if callback is not None and callback(k_done, _metric_dict(np.stack(vals),
                                                                np.asarray(ks))):
        stopped = True
        break
      last = c == inner // chunk - 1
      carry, rec, out = _segment_jit(problem, carry, gamma, key, inner=chunk, record=last,
                                     **kw)
      k_done += chunk * ups
      outs.append(jax.device_get(out))
      if last:
        vals.append(np.asarray(rec[0]))
        ks.append(int(rec[1]))
    if stopped:
      break
  if callback is not None and not stopped:
    callback(k_done, _metric_dict(np.stack(vals), np.asarray(ks)))
  if stopped and k_done != ks[-1]:  # stopped between records: record where it stopped
    carry, rec, _ = _segment_jit(problem, carry, gamma, key, inner=0, record=True, **kw)
    vals.append(np.asarray(rec[0]))
    ks.append(int(rec[1]))
  x = jax.device_get(carry.x)
  flags = [jax.device_get(getattr(carry, n)) for n in
           ("diverged", "diverged_at", "bad_delay_at", "bad_delay")]
  if mesh is not None:
    x = x.reshape((rule.S,) + x.shape[2:])
    flags = [f[0] for f in flags]
  realized = None
  if instrument:
    realized = (np.concatenate([np.zeros((0,), np.int32)] +
                               [o[0].reshape(-1) for o in outs]),
                np.concatenate([np.zeros((0, rule.S), np.int32)] +
                               [o[1].reshape(-1, rule.S) for o in outs]))
  return (x, np.stack(vals), np.asarray(ks), *flags, realized), stopped, k_done


