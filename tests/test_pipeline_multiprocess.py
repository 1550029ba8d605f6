"""Two processes on localhost, 2 CPU devices each, one 4-device pipeline: equal to the
single-process run of the same plan (8 forced devices of conftest.py) and to the reference.

``jax.distributed.initialize`` with JAX's gloo CPU collectives; the executor's ``ppermute``s
between devices 1 and 2 cross the process boundary, and the final parameters are gathered
to every process (``process_allgather``).

The plans are padded together with those of ``test_pipeline.py``'s 4-device group, so the
single-process run is the program that ``test_four_devices_equal_reference`` compiled (loaded
from the suite's persistent compilation cache, not compiled again).
"""
import pathlib
import socket
import subprocess
import sys
import os

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import test_pipeline as tp  # noqa: E402

WORKER = pathlib.Path(__file__).parent / "pipeline_multiprocess_worker.py"
NAMES = ("1f1b-flush", "pipedream")
GROUP = tp.group(4, 4)


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
  port = _free_port()
  # XLA_FLAGS stay: the worker keeps the suite's code generation and sets its device count.
  env = {k: v for k, v in os.environ.items() if k != "JAX_ENABLE_X64"}
  procs = [subprocess.Popen([sys.executable, str(WORKER), str(port), str(i),
                             str(tmp_path / f"p{i}.npz"), ",".join(NAMES), ",".join(GROUP)],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  logs = [p.communicate(timeout=300)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), "\n".join(l[-3000:] for l in logs)
  got = [np.load(tmp_path / f"p{i}.npz") for i in range(2)]
  p, x0 = tp.problem(4)
  plans = tp.plans(4, 4, GROUP)
  for name, plan in ((n, plans[n]) for n in NAMES):
    one = tp.execute(p, plan, gamma=0.5, key=tp.KEY, x0=x0)
    for g in got:  # every process holds the gathered parameters
      np.testing.assert_array_equal(g[name], one.x_SxD)
      assert list(g[name + "_peak"]) == list(one.peak_stash)
    assert np.abs(one.x_SxD - tp.reference(name, 4, "sgd")).max() <= tp.TOL
