"""The persistent compilation cache: compiled XLA programs kept on disk between runs.

JAX compiles every distinct program once per process; with the cache on, a compiled program is
written to a folder in the user's cache directory and a later process (a second
``rpd reproduce``, ``rpd train``, ``rpd theory check``, the test suite) loads it instead of
compiling again. The folder is, in this order: ``$RPD_CACHE_DIR``; ``$XDG_CACHE_HOME/rpd/jax``;
``~/.cache/rpd/jax``. It is never inside the repository. The cache key is a hash of the
program, the jax/jaxlib versions, the XLA flags and the backend, so a stale entry is never
used; deleting the folder is always safe. ``--no-cache`` (every subcommand) or the environment
variable ``RPD_NO_CACHE=1`` turns it off.

JAX's defaults write only programs that took at least one second to compile; here every
program is written (``jax_persistent_cache_min_compile_time_secs = 0``, no size minimum),
since a run of ``rpd`` compiles hundreds of small CPU programs of 0.05-2 s each.
"""
from __future__ import annotations

import os
import sys

ENV_DIR = "RPD_CACHE_DIR"
ENV_OFF = "RPD_NO_CACHE"  # set (non-empty, not "0"): as --no-cache
NO_CACHE_HELP = ("do not read or write the persistent compilation cache (by default compiled "
                 "programs are kept in $RPD_CACHE_DIR, else $XDG_CACHE_HOME/rpd/jax, else "
                 "~/.cache/rpd/jax)")


def cache_dir() -> str:
  """The folder of the persistent compilation cache (see the module docstring)."""
  explicit = os.environ.get(ENV_DIR)
  if explicit:
    return os.path.abspath(os.path.expanduser(explicit))
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(os.path.abspath(base), "rpd", "jax")


def enable(path: str | None = None, *, create: bool = True) -> str | None:
  """Turn the persistent compilation cache on at ``path`` (default :func:`cache_dir`).

  Args:
    path: the cache folder; ``None``: :func:`cache_dir`.
    create: make the folder if it does not exist; if ``False`` and it does not exist, the
      cache stays off (the test suite uses the cache only where one exists).

  Returns:
    the folder in use, or ``None`` if the cache is off (folder absent with ``create=False``,
    or not writable).
  """
  import jax
  path = os.path.abspath(path or cache_dir())
  if not os.path.isdir(path):
    if not create:
      return None
    try:
      os.makedirs(path, exist_ok=True)
    except OSError:
      return None  # no writable cache folder: run without one
  if not os.access(path, os.W_OK | os.X_OK):
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  jax.config.update("jax_enable_compilation_cache", True)
  return path


def configure(on: bool) -> str | None:
  """The command line's switch: :func:`enable` (creating the folder) if ``on``, else
  :func:`disable` (also when ``$RPD_NO_CACHE`` is set). Before JAX is imported it sets JAX's
  environment variables instead, so a command that never uses JAX does not import it.

  Returns:
    the folder in use, or ``None`` if the cache is off.
  """
  on = on and os.environ.get(ENV_OFF, "") in ("", "0")
  if "jax" in sys.modules:
    if on:
      return enable()
    disable()
    return None
  if not on:
    os.environ["JAX_ENABLE_COMPILATION_CACHE"] = "false"
    return None
  path = cache_dir()
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:
    return None
  if not os.access(path, os.W_OK | os.X_OK):
    return None
  os.environ.update({"JAX_ENABLE_COMPILATION_CACHE": "true", "JAX_COMPILATION_CACHE_DIR": path,
                     "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                     "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "-1"})
  return path


def disable() -> None:
  """Turn the persistent compilation cache off for this process."""
  import jax
  jax.config.update("jax_enable_compilation_cache", False)
