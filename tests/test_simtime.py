"""Cost model of simulated time: closed forms, the schedule simulator, barrier costs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rpd import simtime
from rpd.simtime import CostModel


@pytest.mark.parametrize("S", [1, 2, 3, 4, 8])
def test_pipedream_equal_stages_matches_simulator(S):
  """Equal stages, no latency: T_PD(n) = 2S + 2(n-1), and the 1F1B simulator agrees."""
  for n in (1, 2, 5, 3 * S + 1):
    t = simtime.pipedream_time(n, S)
    assert t == 2 * S + 2 * (n - 1)
    assert simtime.pipedream_time_simulated(n, S) == pytest.approx(t)


def test_pipedream_fill_and_steady_state_throughput():
  """Fill = round trip of microbatch 0 (with latency); then one microbatch per slowest F+B."""
  cm = CostModel(F=[1.0, 2.0, 1.0, 0.5], B=[2.0, 2.0, 1.0, 1.0], send_latency=0.25)
  S = 4
  times = simtime.pipedream_times(50, S, cm)
  fill = (1 + 2 + 1 + 0.5) + (2 + 2 + 1 + 1) + 2 * 3 * 0.25
  assert times[0] == pytest.approx(fill)
  assert np.allclose(np.diff(times), 4.0)  # stage 1: F + B = 4 is the slowest
  # Throughput in steady state: 1 / max_s (F_s + B_s).
  assert (50 - 1) / (times[-1] - times[0]) == pytest.approx(1 / 4.0)


def test_pipedream_heterogeneous_is_upper_bound_with_same_slope():
  """Heterogeneous stages: the simulator never exceeds T_PD and has the same period."""
  rng = np.random.default_rng(0)
  S = 5
  cm = CostModel(F=tuple(rng.uniform(0.5, 2, S)), B=tuple(rng.uniform(0.5, 2, S)))
  F, B = cm.stage_FB(S)
  sim = [simtime.pipedream_time_simulated(n, S, cm) for n in (20, 40)]
  cf = [simtime.pipedream_time(n, S, cm) for n in (20, 40)]
  assert sim[0] <= cf[0] + 1e-9 and sim[1] <= cf[1] + 1e-9
  assert (sim[1] - sim[0]) / 20 == pytest.approx(np.max(F + B))


def test_device_speed_slows_its_stage():
  """A device twice as slow doubles the PD period when its stage is the bottleneck."""
  cm = CostModel(speed=(1.0, 2.0, 1.0))
  t = simtime.pipedream_times(10, 3, cm)
  assert np.allclose(np.diff(t), 4.0)
  assert t[0] == pytest.approx(2 * (1 + 2 + 1))


def test_localsgd_closed_form_and_allreduce():
  """No jitter: T_LS = R (H max_p v_p sum_s (F_s + B_s) + latency + d / bandwidth)."""
  cm = CostModel(allreduce_latency=3.0, bandwidth=100.0)
  S, H, R, d = 4, 5, 7, 1000
  t = simtime.localsgd_round_times(R, H, S, d, cm)
  per = H * S * 2.0 + 3.0 + 1000 / 100.0
  assert np.allclose(t, per * np.arange(1, R + 1))
  assert simtime.localsgd_time(R, H, S, d, cm) == pytest.approx(R * per)
  assert CostModel().allreduce_time(10**9) == 0.0


def test_localsgd_barrier_waits_for_slowest_worker():
  """Heterogeneous devices: each round costs the slowest worker's time."""
  speed = (1.0, 1.5, 3.0, 1.0)
  cm = CostModel(speed=speed)
  S, H = 4, 2
  t = simtime.localsgd_time(3, H, S, d=10, cm=cm)
  assert t == pytest.approx(3 * H * 3.0 * S * 2.0)
  # The barrier wastes (slowest - worker) of every other worker's time.
  busy = np.array(speed) * H * S * 2.0
  idle = busy.max() - busy
  assert idle.sum() == pytest.approx(H * S * 2.0 * (S * 3.0 - sum(speed)))


def test_jitter_barrier_mean_exceeds_mean_work_and_is_reproducible():
  """With random compute times the barrier costs E[max] > max E; same seed, same times."""
  cm = CostModel(jitter=0.5, seed=3)
  S, H, R = 8, 1, 400
  t = simtime.localsgd_round_times(R, H, S, 1, cm)
  per_round_mean = t[-1] / R
  assert per_round_mean > S * 2.0 * 1.05  # E max over 8 workers > mean work (= 2S)
  assert np.array_equal(t, simtime.localsgd_round_times(R, H, S, 1, cm))
  t2 = simtime.localsgd_round_times(R, H, S, 1, CostModel(jitter=0.5, seed=4))
  assert not np.array_equal(t, t2)
  # Mean-one factors: PD with one stage has mean period F + B = 2.
  tp = simtime.pipedream_times(20000, 1, CostModel(jitter=0.5, seed=0))
  assert np.mean(np.diff(tp)) == pytest.approx(2.0, rel=0.02)


def test_same_throughput_without_overheads():
  """Equal stages, no latency, free all-reduce: both methods do S microbatches per 2S units."""
  S, H = 8, 4
  n = S * H * 50
  t_pd = simtime.pipedream_time(n, S)
  t_ls = simtime.localsgd_time(50, H, S, d=1)  # 50 rounds x H steps x S workers = n
  assert t_ls == pytest.approx(50 * H * 2.0 * S)
  assert t_pd - t_ls == pytest.approx(2 * S - 2)  # PD's fill minus one period


def test_bad_cost_model_raises():
  with pytest.raises(ValueError, match="jitter"):
    CostModel(jitter=-1)
  with pytest.raises(ValueError, match="speed"):
    CostModel(speed=(1.0, 2.0)).device_speed(3)
  with pytest.raises(ValueError, match="unknown cost-model"):
    simtime.cost_model_from_dict({"Fwd": 1})
  assert simtime.cost_model_from_dict({"F": 2.0}).F == 2.0
  assert math.isinf(CostModel().bandwidth)
