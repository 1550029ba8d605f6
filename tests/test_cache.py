"""The persistent compilation cache (rpd.cache): where it lives, that rpd writes and reads it,
and that --no-cache / RPD_NO_CACHE leave it alone."""
import json
import os
import pathlib
import subprocess
import sys

from rpd import cache

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = ["train", "--problem", "quadratic", "--stages", "2", "--rule", "pipedream", "--lr",
         "0.1", "--steps", "64", "--json"]


def test_cache_dir_order_and_never_in_the_repository(monkeypatch, tmp_path):
  monkeypatch.setenv("RPD_CACHE_DIR", str(tmp_path / "explicit"))
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert cache.cache_dir() == str(tmp_path / "explicit")
  monkeypatch.delenv("RPD_CACHE_DIR")
  assert cache.cache_dir() == str(tmp_path / "xdg" / "rpd" / "jax")
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert cache.cache_dir() == str(tmp_path / "home" / ".cache" / "rpd" / "jax")
  assert not cache.cache_dir().startswith(str(ROOT) + os.sep)


# Runs rpd in a fresh process and prints how many programs it compiled, how many of them the
# persistent cache served, and rpd's exit code.
_CHILD = r"""
import json, sys
import jax.monitoring as mon
n = {"compiled": 0, "hits": 0}
def dur(event, secs, **kw):
  if event == "/jax/core/compile/backend_compile_duration":
    n["compiled"] += 1
def ev(event, **kw):
  if event == "/jax/compilation_cache/cache_hits":
    n["hits"] += 1
mon.register_event_duration_secs_listener(dur)
mon.register_event_listener(ev)
from rpd.cli import main
rc = main(sys.argv[1:])
print(json.dumps(dict(n, rc=rc)))
"""


def _rpd(args, cache_dir, cwd, **extra):
  env = {k: v for k, v in os.environ.items()
         if not k.startswith(("XLA_", "JAX_")) and k != cache.ENV_OFF}
  env.update(RPD_CACHE_DIR=str(cache_dir), **extra)
  proc = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True,
                        env=env, cwd=cwd, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out["rc"] == 0, proc.stderr[-2000:]
  return out


def test_rpd_fills_the_cache_and_no_cache_leaves_it_alone(tmp_path):
  """A run writes every compiled program (small ones too: JAX's default keeps only those that
  took >= 1 s to compile); a second run in a new process loads every one of them from the
  cache; with --no-cache or RPD_NO_CACHE=1 nothing is read or written."""
  on, off = tmp_path / "on", tmp_path / "off"
  first = _rpd(TRAIN, on, tmp_path)
  assert first["compiled"] >= 2 and first["hits"] == 0, first
  assert len(list(on.iterdir())) >= first["compiled"] - 1  # every program written
  second = _rpd(TRAIN, on, tmp_path)
  assert second["hits"] == second["compiled"] == first["compiled"], (first, second)
  third = _rpd(TRAIN + ["--no-cache"], off, tmp_path)
  assert third["hits"] == 0 and third["compiled"] == first["compiled"], third
  assert not off.exists() or not any(off.iterdir())


def test_rpd_no_cache_environment_variable_turns_it_off(tmp_path):
  """RPD_NO_CACHE=1 acts as --no-cache; without it the settings are passed to JAX through its
  environment variables before JAX is imported (how the command line starts), and JAX then
  has them: the folder, and every program written (no minimum compile time or size)."""
  code = ("import os, sys; from rpd import cache; print(cache.configure(True), "
          "'jax' in sys.modules); import jax; c = jax.config; "
          "print(c.jax_enable_compilation_cache, c.jax_compilation_cache_dir, "
          "c.jax_persistent_cache_min_compile_time_secs, "
          "c.jax_persistent_cache_min_entry_size_bytes)")
  env = {k: v for k, v in os.environ.items() if not k.startswith(("XLA_", "JAX_"))}
  env.update(RPD_CACHE_DIR=str(tmp_path / "c"))
  c = tmp_path / "c"
  for off, want in (("1", f"None False\nFalse None 1.0 0"),
                    ("0", f"{c} False\nTrue {c} 0.0 -1")):
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(env, RPD_NO_CACHE=off), timeout=60).stdout.strip()
    assert out == want


def test_reproduce_names_a_run_that_started_from_an_empty_cache(tmp_path):
  """Programs loaded from a cache that was empty when the run started were compiled by the
  same run (another --jobs lane): the README must call it a fresh clone's first run, not a
  warm cache; with entries present at the start it is a warm cache. The folder is JAX's own
  setting, whether the environment set it before JAX was imported (the command line) or
  rpd.cache.enable after (a benchmark calling the command in its process; the environment
  variable alone made its full run's README say "a warm cache")."""
  import jax
  from rpd.cli.reproduce import _Programs
  empty = tmp_path / "empty"
  empty.mkdir()
  saved = (jax.config.jax_compilation_cache_dir, jax.config.jax_enable_compilation_cache)
  try:
    jax.config.update("jax_compilation_cache_dir", str(empty))
    jax.config.update("jax_enable_compilation_cache", True)
    p = _Programs()
    p._start = {"compiled": _Programs._counts["compiled"] - 5,
                "cached": _Programs._counts["cached"] - 2}
    assert p.started_empty and "empty at the start" in p.sentence()
    (empty / "entry").write_text("x")
    q = _Programs()
    q._start = dict(p._start)
    assert not q.started_empty and "a warm cache" in q.sentence()
    (empty / "entry").unlink()
    jax.config.update("jax_enable_compilation_cache", False)
    assert not _Programs().started_empty  # no persistent cache in use
  finally:
    jax.config.update("jax_compilation_cache_dir", saved[0])
    jax.config.update("jax_enable_compilation_cache", saved[1])
