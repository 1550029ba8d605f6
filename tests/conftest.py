"""Test configuration: 8 forced host devices and float64, set before JAX is imported."""
import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402  (must come after XLA_FLAGS)

jax.config.update("jax_enable_x64", True)

from rpd import cache as _cache  # noqa: E402

# Compiled programs from earlier runs of the suite (and of rpd) where the user's cache folder
# exists (rpd creates it on its first run); never created here (nor by the commands the tests
# run: RPD_NO_CACHE), never required.
if _cache.enable(create=False) is None:
  os.environ[_cache.ENV_OFF] = "1"


import pytest  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
  """Drop JAX's compiled programs after each test module: one process compiles thousands of
  programs over the suite, and keeping them all made XLA's compiler crash late in the run."""
  yield
  jax.clear_caches()
