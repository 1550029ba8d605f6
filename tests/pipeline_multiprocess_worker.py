"""One process of the 2-process pipeline test (``tests/test_pipeline_multiprocess.py``).

Usage: ``python pipeline_multiprocess_worker.py PORT PROCESS_ID OUT.npz NAMES GROUP``: run the
schedules ``NAMES`` (comma-separated) with their plans padded together with those of ``GROUP``
(a comma-separated superset; the padding of ``tests/test_pipeline.py``'s 4-device group, so the
in-process run of the test reuses that module's compiled program). Each process has 2
CPU devices; ``jax.distributed.initialize`` joins them (gloo CPU collectives) into one
4-device runtime, and every process runs the same pipeline over the 4 devices.
"""
import os
import sys

# The test's XLA flags (the suite's code generation: the same machine code as the one-process
# run it is compared with), with 2 devices per process instead of the suite's 8.
os.environ["XLA_FLAGS"] = " ".join(
    [f for f in os.environ.get("XLA_FLAGS", "").split()
     if not f.startswith("--xla_force_host_platform_device_count")]
    + ["--xla_force_host_platform_device_count=2"])
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_cpu_collectives_implementation", "gloo")

port, pid, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2,
                           process_id=pid, initialization_timeout=120)

import numpy as np  # noqa: E402

from rpd.pipeline import build_plan, execute, pad_together, stage_mesh  # noqa: E402
from rpd.problems.mlp import make_mlp  # noqa: E402

assert jax.device_count() == 4 and jax.local_device_count() == 2
M, NB = 4, 3
p = make_mlp(4, n_layers=4, hidden=8, batch=2 * M)
x0 = np.asarray(jax.jit(p.init)(jax.random.key(7)))
results = {}
names, group = sys.argv[4].split(","), sys.argv[5].split(",")
padded = dict(zip(group, pad_together([build_plan(n, 4, M, batches=NB) for n in group])))
for name, plan in ((n, padded[n]) for n in names):
  res = execute(p, plan, gamma=0.5, key=jax.random.key(1), x0=x0, mesh=stage_mesh(4))
  results[name] = res.x_SxD
  results[name + "_peak"] = np.asarray(res.peak_stash)
np.savez(out, **results)
print("ok", pid, jax.process_count(), flush=True)
