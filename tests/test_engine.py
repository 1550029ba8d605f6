"""Engine semantics: exact stale reads, PipeDream's realized delays, RPD's sampling, memory,
sharding, vmap sweeps, optimizers, divergence."""
import math

import numpy as np
import pytest
import jax
import jax.numpy as jnp
import optax

from rpd.engine import buffer_floats, run, step_shapes, sweep
from rpd.problems import get_problem
from rpd.rules import get_rule
from rpd.theory.delay import tau_table


def test_delayed_gradient_descent_S1_exact():
  """S = 1, constant:TAU is x_{k+1} = x_k - gamma (A x_{k-TAU} - b), x_t = x_0 for t < 0."""
  tau, gamma, K = 3, 0.3, 40
  prob = get_problem("quadratic", 1, d=5, noise=0.0, seed=2)
  A, b = np.asarray(prob.A), np.asarray(prob.b)
  xs = [np.zeros(5)]
  for k in range(K):
    xs.append(xs[-1] - gamma * (A @ xs[max(k - tau, 0)] - b))
  res = run(prob, get_rule(f"constant:{tau}", 1), gamma=gamma, K=K, key=jax.random.key(0),
            record_every=1)
  np.testing.assert_allclose(res.x_SxD[0], xs[-1], rtol=0, atol=1e-13)
  f = [0.5 * x @ A @ x - b @ x for x in xs]
  np.testing.assert_allclose(res.metrics["loss"], f, rtol=0, atol=1e-13)
  # the recorded stale read at k is x_{k - tau}
  err = [np.sum((xs[k] - xs[max(k - tau, 0)]) ** 2) for k in range(K + 1)]
  np.testing.assert_allclose(res.metrics["stale_x_err"], err, rtol=0, atol=1e-13)


def test_stale_reads_match_a_direct_replay():
  """Every iteration's read equals x_j^{k - tau_kj} from a full history (rpd:uniform)."""
  S, K, gamma = 4, 60, 0.2
  prob = get_problem("quadratic", S, d=8, noise=0.0, seed=0)
  rule = get_rule("rpd:uniform:6", S)
  res = run(prob, rule, gamma=gamma, K=K, key=jax.random.key(7), instrument=True)
  A, b = np.asarray(prob.A), np.asarray(prob.b)
  hist = [np.zeros((S, 2))]
  for k in range(K):
    i, tau = res.realized["block"][k], res.realized["tau"][k]
    xhat = np.stack([hist[max(k - tau[j], 0)][j] for j in range(S)])
    g = (A @ xhat.reshape(-1) - b).reshape(S, 2)
    x = hist[-1].copy()
    x[i] -= gamma * g[i]
    hist.append(x)
  np.testing.assert_allclose(res.x_SxD, hist[-1], rtol=0, atol=1e-13)


@pytest.mark.parametrize("S", [2, 3, 5, 8])
def test_pipedream_realized_delays_equal_the_schedule_table(S):
  rule = get_rule("pipedream", S)
  K = S * 4 * S
  res = run(get_problem("quadratic", S, d=2 * S, noise=0.1), rule, gamma=0.01, K=K,
            key=jax.random.key(0), instrument=True)
  table = np.asarray(tau_table(S))
  blocks, tau = res.realized["block"], res.realized["tau"]
  np.testing.assert_array_equal(tau, table[blocks])
  # each period updates every block once
  np.testing.assert_array_equal(np.sort(blocks.reshape(-1, S), axis=1),
                                np.tile(np.arange(S), (K // S, 1)))


def test_rpd_delays_follow_the_pipedream_table():
  S = 6
  res = run(get_problem("quadratic", S, d=12), get_rule("rpd", S), gamma=0.01, K=600,
            key=jax.random.key(1), instrument=True)
  table = np.asarray(tau_table(S))
  np.testing.assert_array_equal(res.realized["tau"], table[res.realized["block"]])


def test_rpd_blocks_are_uniform_chi_square():
  """Pearson chi-square of block counts, fixed seed, 1% critical value for 7 dof = 18.48."""
  S, K = 8, 8000
  res = run(get_problem("quadratic", S, d=16), get_rule("rpd", S), gamma=0.01, K=K,
            key=jax.random.key(2024), instrument=True)
  counts = np.bincount(res.realized["block"], minlength=S)
  chi2 = np.sum((counts - K / S) ** 2 / (K / S))
  assert chi2 < 18.48, (chi2, counts)
  # and the test can fail: a biased sequence is rejected
  biased = np.bincount(np.minimum(res.realized["block"], S - 2), minlength=S)
  assert np.sum((biased - K / S) ** 2 / (K / S)) > 18.48


@pytest.mark.parametrize("S", [2, 8, 32])
def test_buffer_memory_bounds(S):
  d = 4 * S
  prob = get_problem("quadratic", S, d=d, diagonal=True)
  pd = get_rule("pipedream", S)
  assert buffer_floats(pd, prob.D) <= (S + 1) * d
  for spec in ["rpd", "constant:7", "rpd:uniform:100", "none"]:
    rule = get_rule(spec, S)
    assert buffer_floats(rule, prob.D) <= (rule.tau_max + 1) * d / S + d, spec
  assert buffer_floats(pd, prob.D) == S * d
  # The stated numbers are the floats the rules' states really hold (their traced shapes:
  # nothing compiled, so S = 32 costs no program), and a run reports them (S = 2 only: the
  # number comes from the rule, not from the compiled program).
  for spec in ["pipedream", "rpd", "constant:7", "rpd:uniform:100", "none"]:
    rule = get_rule(spec, S)
    state = step_shapes(prob, rule)[0].rule
    floats = sum(math.prod(a.shape) for a in jax.tree.leaves(state)
                 if jnp.issubdtype(a.dtype, jnp.floating))
    assert floats == buffer_floats(rule, prob.D), spec
  if S == 2:
    res = run(prob, pd, gamma=0.01, K=2 * S, key=jax.random.key(0))
    assert res.buffer_floats == buffer_floats(pd, prob.D) == S * d


@pytest.mark.parametrize("spec,S,n_dev", [("pipedream", 8, 8), ("rpd", 8, 4),
                                          ("constant:5", 4, 2), ("none", 8, 8),
                                          ("schedule:pipemare", 4, 4)])
def test_sharded_equals_unsharded(spec, S, n_dev):
  prob = get_problem("logistic", S, n=64, d=2 * S, batch=8, seed=3)
  rule = get_rule(spec, S)
  mesh = jax.make_mesh((n_dev,), ("stage",))
  K = rule.updates_per_step * 10
  a = run(prob, rule, gamma=0.3, K=K, key=jax.random.key(4))
  b = run(prob, rule, gamma=0.3, K=K, key=jax.random.key(4), mesh=mesh)
  np.testing.assert_allclose(b.x_SxD, a.x_SxD, rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(b.metrics["loss"], a.metrics["loss"], rtol=1e-12)


def test_device_count_must_divide_S():
  mesh = jax.make_mesh((4,), ("stage",))
  with pytest.raises(ValueError, match="device count 4 does not divide S=6"):
    run(get_problem("quadratic", 6, d=12), get_rule("none", 6), gamma=0.1, K=6,
        key=jax.random.key(0), mesh=mesh)


@pytest.mark.parametrize("spec", ["pipedream", "rpd"])
def test_vmap_sweep_equals_loop(spec):
  S = 4
  prob = get_problem("quadratic", S, d=8, noise=0.2)
  rule = get_rule(spec, S)
  gammas, seeds = [0.05, 0.1, 0.2], [0, 1, 2]
  sw = sweep(prob, rule, gammas=gammas, seeds=seeds, K=64)
  for c, (g, s) in enumerate(zip(gammas, seeds)):
    one = run(prob, rule, gamma=g, K=64, key=jax.random.key(s))
    np.testing.assert_allclose(sw.x_SxD[c], one.x_SxD, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(sw.metrics["loss"][c], one.metrics["loss"], rtol=1e-12)


@pytest.mark.parametrize("name,ref", [
    ("momentum", lambda g: optax.chain(optax.trace(decay=0.9), optax.scale(-g))),
    ("adam", lambda g: optax.chain(optax.scale_by_adam(), optax.scale(-g)))])
def test_optimizers_zero_delay_match_optax(name, ref):
  """Zero-delay program rule with momentum/Adam equals optax on the whole vector."""
  S, gamma, n = 4, 0.05, 20
  prob = get_problem("quadratic", S, d=8, noise=0.3)
  key = jax.random.key(0)
  res = run(prob, get_rule("sync", S), gamma=gamma, K=S * n, key=key, optimizer=name)
  from rpd.engine import sample_key
  tx = ref(gamma)
  x = prob.init(key)
  state = tx.init(x)
  for m in range(n):
    g = prob.grad(x, prob.sample(sample_key(key, m)))
    u, state = tx.update(g, state, x)
    x = optax.apply_updates(x, u)
  np.testing.assert_allclose(res.x_SxD, np.asarray(x), rtol=1e-12, atol=1e-14)


def test_divergence_is_caught_and_a_sweep_carries_on():
  S = 2
  prob = get_problem("quadratic", S, d=4, noise=0.0)
  rule = get_rule("constant:4", S)
  sw = sweep(prob, rule, gammas=[0.1, 1e6], seeds=[0, 0], K=400)
  assert list(sw.diverged) == [False, True]
  assert sw.diverged_at[0] == -1 and 0 < sw.diverged_at[1] < 400
  assert np.all(np.isfinite(sw.x_SxD[1]))  # frozen at the last finite iterate
  one = run(prob, get_rule("pipedream", S), gamma=1e6, K=400, key=jax.random.key(0))
  assert one.diverged and one.diverged_at > 0


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_step_size(bad):
  with pytest.raises(ValueError, match="step size"):
    run(get_problem("quadratic", 2, d=4), get_rule("none", 2), gamma=bad, K=4,
        key=jax.random.key(0))


def test_K_must_be_a_multiple_of_S_for_pipedream():
  with pytest.raises(ValueError, match="K=10 must be a multiple of 4"):
    run(get_problem("quadratic", 4, d=8), get_rule("pipedream", 4), gamma=0.1, K=10,
        key=jax.random.key(0))


def test_track_average_is_the_exact_running_mean():
  S, K = 2, 24
  prob = get_problem("quadratic", S, d=4, noise=0.0, seed=5)
  rule = get_rule("constant:2", S)
  res = run(prob, rule, gamma=0.2, K=K, key=jax.random.key(0), record_every=1,
            track_average=True)
  g = res.metrics["grad_norm_sq"]
  np.testing.assert_allclose(res.metrics["avg_grad_norm_sq"][1:], np.cumsum(g[:-1]) /
                             np.arange(1, K + 1), rtol=1e-12)
  np.testing.assert_allclose(res.metrics["avg_stale_x_err"][1:],
                             np.cumsum(res.metrics["stale_x_err"][:-1]) / np.arange(1, K + 1),
                             rtol=1e-12)


def test_track_average_pipedream_runs():
  S = 4
  res = run(get_problem("quadratic", S, d=8, noise=0.1), get_rule("pipedream", S), gamma=0.05,
            K=64, key=jax.random.key(0), track_average=True, record_every=16)
  assert np.all(np.isfinite(res.metrics["avg_grad_norm_sq"][1:]))
  assert np.all(res.metrics["avg_stale_x_err"][1:] > 0)


@pytest.mark.parametrize("spec", ["pipedream", "pipemare:pipedream"])
def test_warmup_gradients_are_one_gradient_in_the_program(spec, monkeypatch):
  """A program rule's warm-up gradients (7 for PipeDream at S = 16, all at ``x0``) are traced
  as one scanned gradient, not one copy of the model's backward pass per microbatch in flight
  (at S = 16 that halved the character LM's compile time with the same bits: BENCHMARKS.md,
  session 10). The old code traced 15 gradients here."""
  from rpd.engine_context import Context
  S = 16
  rule = get_rule(spec, S)
  assert len(rule.program().init_pending) >= 2  # there is a warm-up to compile
  traced = []
  grad = Context.grad
  monkeypatch.setattr(Context, "grad", lambda self, x, k: traced.append(1) or grad(self, x, k))
  prob = get_problem("quadratic", S, d=2 * S, noise=0.1, seed=0)
  step_shapes(prob, rule)  # traces init once, and init + one step once
  per_step = rule.program().q
  assert len(traced) == 2 * 1 + per_step


@pytest.mark.parametrize("S", [4, 16])
def test_warmup_slots_hold_each_microbatch_gradient_at_x0(S):
  """The state a program rule starts from, against the warm-up written out directly: slot
  ``o mod R`` holds ``grad f(x0; xi_o)`` for each microbatch ``o`` in flight (noisy gradients,
  so a swapped slot or key changes the values), and the read table has each initial read's
  iteration (a loop of single writes, as the engine did before it scanned the warm-up)."""
  from rpd.engine_core import _context
  from rpd.keys import sample_key
  from rpd.optimizers import get_optimizer
  rule = get_rule("pipedream", S)
  prog = rule.program()
  assert len(prog.init_pending) >= 1
  prob = get_problem("quadratic", S, d=2 * S, noise=0.3, seed=1)
  key = jax.random.key(4)
  x0 = prob.init(jax.random.key(2))
  ctx = _context(prob, rule, get_optimizer("sgd"), jnp.asarray(0.1, x0.dtype), None, False)
  st = rule.init(x0, key, ctx)
  slots = np.asarray(st.slots)
  for o in prog.init_pending:
    want = np.asarray(prob.grad(x0, prob.sample(sample_key(key, o))))
    # the same gradient, traced in a scan here and run op by op there: equal to rounding
    np.testing.assert_allclose(slots[o % prog.R], want, rtol=1e-12, atol=1e-14)
  read_k = np.zeros((prog.R, S), np.int64)
  for o, b, k in prog.init_reads:
    read_k[o % prog.R, b] = k
  np.testing.assert_array_equal(np.asarray(st.read_k), read_k)
