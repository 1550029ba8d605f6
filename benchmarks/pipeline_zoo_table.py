"""The README's executed-schedules table: every schedule's largest difference from its
independent reference and its measured peak stash against the simulator's.

Command (its output is the table in the README, section "A real pipeline"):

    python benchmarks/pipeline_zoo_table.py

Runs the checks of ``tests/test_pipeline.py`` (P = 2 devices, M = 4 microbatches per batch,
3 batches, float64, the optimizers the tests use) and prints one markdown row per schedule.
"""
import os
import pathlib
import sys

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                           " --xla_force_host_platform_device_count=8").strip()
import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
import test_pipeline as tp  # noqa: E402

from rpd.pipeline import REFUSED  # noqa: E402
from rpd.schedules import SCHEDULES, get_schedule  # noqa: E402

REFS = {"synchronous": "minibatch training, mean of M plain `jax.grad`s",
        "stash": "PipeDream replay (stage s reads after max(0, m - (S-1-s)) updates)",
        "nostash": "PipeMare replay (backward at the current weights)",
        "2bw": "2BW recursion W(t+1) = W(t) - g(W(t-1))"}


def main():
  print("| schedule | executed | V | reference | largest difference (optimizers) | "
        "peak stash per device (measured = plan) | simulator |")
  print("|---|---|---|---|---|---|---|")
  for name in SCHEDULES:
    if name in REFUSED:
      print(f"| `{name}` | refused: {REFUSED[name]} | | | | | |")
      continue
    sem = get_schedule(name).semantics
    kind = ("synchronous" if sem.synchronous else "2bw" if sem.double_buffered
            else "stash" if sem.stashes else "nostash")
    opts = [o for n, o in tp.CASES if n == name]
    diffs = {o: tp.check_schedule(name, o) for o in opts}
    S = tp.blocks_of(name)
    plan = tp.plans(2, S, tp.group(2, S))[name]
    sim = tp.simulator_peak(name, 2, S // 2)
    print(f"| `{name}` | yes | {S // 2} | {REFS[kind]} | {max(diffs.values()):.1e} "
          f"({', '.join(opts)}) | {list(plan.peak_stash)} | {sim} |", flush=True)


if __name__ == "__main__":
  main()
