"""Shared experiment utilities: resumable JSONL results, run metadata, progress (tqdm), fits.

Results files. Every finished configuration is one JSON line appended (and flushed, fsynced)
to a ``.jsonl`` file as soon as its batch finishes: ``{"key": ..., "config": {...},
"result": {...}, "meta": {...}}``. A rerun loads the file and skips every configuration whose
key is present, so an interrupted sweep (Ctrl-C) loses nothing that finished; a line cut short
by a crash is ignored on load. ``meta`` carries the git commit, the jax version, the devices,
the seed and the wall time of the batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Iterable

import numpy as np

from rpd import codegen


def _jsonable(v):
  if isinstance(v, dict):
    return {str(k): _jsonable(x) for k, x in v.items()}
  if isinstance(v, (list, tuple)):
    return [_jsonable(x) for x in v]
  if isinstance(v, np.ndarray):
    return _jsonable(v.tolist())
  if isinstance(v, (np.floating, float)):
    f = float(v)
    return f if math.isfinite(f) else ("inf" if f > 0 else ("-inf" if f < 0 else "nan"))
  if isinstance(v, (np.integer,)):
    return int(v)
  if isinstance(v, (np.bool_,)):
    return bool(v)
  return v


def _from_json(v):
  if isinstance(v, dict):
    return {k: _from_json(x) for k, x in v.items()}
  if isinstance(v, list):
    return [_from_json(x) for x in v]
  if v in ("inf", "-inf", "nan"):
    return float(v)
  return v


def config_key(config: dict) -> str:
  """A canonical string key of a configuration (sorted JSON)."""
  return json.dumps(_jsonable(config), sort_keys=True)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
  """``git rev-parse HEAD`` of the repository (``"unknown"`` outside git), ``+dirty`` if so."""
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, timeout=10).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return (head or "unknown") + ("+dirty" if dirty else "")


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
  """The CPU the run ran on, e.g. ``"Intel(R) Xeon(R) Processor, 2.6 GHz"``.

  A stated runtime holds for its machine only: this names it.

  Args:
    cpuinfo: the file to read (Linux's ``/proc/cpuinfo``).

  Returns:
    its first ``model name`` (spaces collapsed) and ``cpu MHz`` in GHz to one decimal; the
    name alone where no frequency is listed; ``platform.processor()`` where the file has no
    name or does not exist; ``"unknown"`` where that is empty too.
  """
  name, mhz = "", ""
  try:
    with open(cpuinfo) as f:
      for line in f:
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and not name:
          name = value
        elif key == "cpu MHz" and not mhz:
          mhz = value
        if name and mhz:
          break
  except OSError:
    pass
  name = " ".join((name or platform.processor() or "unknown").split())
  try:
    return f"{name}, {float(mhz) / 1000:.1f} GHz" if mhz else name
  except ValueError:
    return name


@functools.lru_cache(maxsize=1)
def _this_cpu() -> str:
  return cpu_name()


def metadata(seed: Any = None, wall_s: float | None = None) -> dict:
  """Metadata stored with every result row."""
  import jax
  return {
      "commit": git_commit(),
      "jax": jax.__version__,
      "devices": [str(d) for d in jax.devices()],
      "x64": bool(jax.config.jax_enable_x64),
      "python": platform.python_version(),
      "cpus": os.cpu_count(),
      "cpu": _this_cpu(),
      "seed": seed,
      "wall_s": wall_s,
      "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
  }


class ResultsStore:
  """Append-only JSONL results file with skip-if-done (see the module docstring)."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._lock = threading.Lock()  # batches may finish in several threads
    self.rows: dict[str, dict] = {}
    if os.path.exists(path):
      with open(path) as f:
        for line in f:
          try:
            row = _from_json(json.loads(line))
          except json.JSONDecodeError:
            continue  # a line cut short by a crash: that configuration reruns
          self.rows[row["key"]] = row

  def has(self, config: dict) -> bool:
    return config_key(config) in self.rows

  def get(self, config: dict) -> dict | None:
    return self.rows.get(config_key(config))

  def missing(self, configs: Iterable[dict]) -> list[dict]:
    return [c for c in configs if not self.has(c)]

  def add(self, rows: list[tuple[dict, dict, dict]]) -> None:
    """Append ``(config, result, meta)`` rows and flush them to disk at once (one thread at
    a time: a batch's rows stay together in the file)."""
    with self._lock:
      self._add(rows)

  def _add(self, rows: list[tuple[dict, dict, dict]]) -> None:
    lines = []
    for config, result, meta in rows:
      row = {"key": config_key(config), "config": _jsonable(config),
             "result": _jsonable(result), "meta": _jsonable(meta)}
      lines.append(json.dumps(row) + "\n")
      self.rows[row["key"]] = _from_json(json.loads(lines[-1]))
    with open(self.path, "a+b") as f:
      f.seek(0, os.SEEK_END)
      if f.tell() > 0:
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":  # a line cut short by a crash: start on a fresh line
          f.write(b"\n")
      f.write("".join(lines).encode())
      f.flush()
      os.fsync(f.fileno())

  def select(self, **match) -> list[dict]:
    """Rows whose config has every ``field == value`` of ``match`` (compared as JSON)."""
    want = {k: config_key(v) for k, v in match.items()}
    return [r for key, r in self.rows.items()
            if all(self._field_keys(key, r).get(k, "null") == w for k, w in want.items())]

  def _field_keys(self, key: str, row: dict) -> dict[str, str]:
    """``{field: config_key(value)}`` of a row's config, computed once per row."""
    cache = self.__dict__.setdefault("_fields", {})
    if key not in cache:
      cache[key] = {k: config_key(v) for k, v in row["config"].items()}
    return cache[key]


class Interrupted(KeyboardInterrupt):
  """Ctrl-C was pressed: raised between batches (never inside a JAX computation)."""


# Compiled XLA:CPU programs stay in the process while JAX's in-memory caches hold them: their
# machine code in memory mappings (6-20 per program measured, code and data sections of the
# JIT) and their memory. Linux caps a process's mappings (vm.max_map_count, 65530 by default);
# at the cap, or when memory runs out, LLVM's next allocation fails ("LLVM compilation error:
# Cannot allocate memory") and the process crashes, as the full run did after 17 minutes of
# compiling in one process (BENCHMARKS.md, session 15). After each batch,
# :func:`release_compiled_programs` empties JAX's caches once the mappings or the resident
# memory pass this fraction of their limit; a program needed again is loaded from the
# persistent compilation cache (or compiled again) and computes the same bits.
RELEASE_FRACTION = 0.5


def _pressure(proc: str = "/proc") -> float | None:
  """The larger of (mappings / ``vm.max_map_count``) and (resident memory / ``MemTotal``) of
  this process, read from ``proc`` (Linux's ``/proc``); ``None`` where unreadable (not Linux:
  no action)."""
  try:
    with open(f"{proc}/sys/vm/max_map_count") as f:
      cap = int(f.read().split()[0])
    with open(f"{proc}/self/maps", "rb") as f:
      maps = sum(1 for _ in f)
    with open(f"{proc}/self/status") as f:
      rss = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    with open(f"{proc}/meminfo") as f:
      total = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    return max(maps / cap, rss / total)
  except (OSError, ValueError, IndexError, StopIteration, ZeroDivisionError):
    return None


def release_compiled_programs(fraction: float = RELEASE_FRACTION, pressure=_pressure) -> bool:
  """Empty JAX's in-memory caches (``jax.clear_caches()``) once this process holds more than
  ``fraction`` of its memory mappings or of the machine's memory, so that a long run cannot
  exhaust them.

  Args:
    fraction: the limit, a fraction of ``vm.max_map_count`` and of ``MemTotal``.
    pressure: returns the larger used fraction of the two, or ``None`` where unknown (not
      Linux: no action).

  Returns:
    whether the caches were emptied.
  """
  p = pressure()
  if p is None or p <= fraction:
    return False
  import jax
  jax.clear_caches()
  return True


_STOP = threading.Event()


def check_interrupt() -> None:
  """Raise :class:`Interrupted` if Ctrl-C was pressed inside :func:`deferred_sigint`.

  The runners call this before every batch, so a batch either finishes (and its rows are on
  disk) or never starts.
  """
  if _STOP.is_set():
    raise Interrupted


_SLOTS: threading.BoundedSemaphore | None = None


@contextlib.contextmanager
def batch_slots(n: int):
  """Within this block at most ``n`` batches of :func:`run_batches` run at once, in every
  thread together (``rpd reproduce`` runs two experiments, each with its batches in
  threads: without a common limit four compiles would share two cores)."""
  global _SLOTS
  previous, _SLOTS = _SLOTS, threading.BoundedSemaphore(n)
  try:
    yield
  finally:
    _SLOTS = previous


def _in_slot(fn, *item):
  slots = _SLOTS
  if slots is None:
    return fn(*item)
  with slots:
    return fn(*item)


def run_batches(fn, items: list, jobs: int = 1) -> list:
  """``[fn(*item) for item in items]``, with ``jobs > 1`` in that many threads.

  For an experiment's independent batches (each appends its own rows when it finishes, so
  the results do not depend on the order): XLA compiles and runs outside Python's lock, so
  ``jobs`` threads use ``jobs`` cores. In threads the items start in reverse order (a config
  lists its costliest batches last: the largest S, the language models), so the last one
  to start is a short one; within :func:`batch_slots` each batch also waits for a slot.
  The first error (or :class:`Interrupted`) is raised once the
  running batches end; batches not yet started do not start.
  """
  if jobs <= 1 or len(items) <= 1:
    return [_in_slot(fn, *item) for item in items]
  from concurrent.futures import ThreadPoolExecutor
  with ThreadPoolExecutor(jobs, thread_name_prefix="rpd-batch") as ex:
    futures = [ex.submit(_in_slot, fn, *item) for item in reversed(items)]
    try:
      return [f.result() for f in futures][::-1]
    except BaseException:
      for f in futures:
        f.cancel()
      raise


def stop_batches() -> None:
  """Stop every runner before its next batch, as a first Ctrl-C does (:func:`check_interrupt`
  raises :class:`Interrupted`): ``rpd reproduce`` stops its other lanes when one fails."""
  _STOP.set()


@contextlib.contextmanager
def deferred_sigint(message: str = "interrupt: stopping after the current batch "
                    "(Ctrl-C again to stop at once)"):
  """Within this block, Ctrl-C sets a flag that :func:`check_interrupt` turns into
  :class:`Interrupted` between batches, instead of raising ``KeyboardInterrupt`` wherever the
  main thread happens to be.

  Why: a ``KeyboardInterrupt`` raised while JAX has work in flight (compiling or dispatching a
  batch) unwinds past it, and tearing the XLA runtime down at interpreter exit with that work
  still pending crashed with a segmentation fault (exit -11) in about half of the tries. A
  second Ctrl-C exits at once with code 130 (``os._exit``, no interpreter teardown: every
  finished batch is already fsynced; a line cut short is ignored on load). Outside the main
  thread (where signal handlers cannot be installed) the block changes nothing.
  """
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  _STOP.clear()

  def handler(signum, frame):
    if _STOP.is_set():
      sys.stderr.write("\ninterrupted again: exiting now; finished results are kept\n")
      sys.stderr.flush()
      os._exit(130)
    _STOP.set()
    sys.stderr.write(f"\n{message}\n")
    sys.stderr.flush()

  previous = signal.signal(signal.SIGINT, handler)
  try:
    yield
  finally:
    signal.signal(signal.SIGINT, previous)
    _STOP.clear()


class _LineWriter:
  """A file for tqdm when stderr is not a terminal (a log file, a pipe): every refresh is a
  line of its own (tqdm's carriage returns would otherwise make one enormous line)."""

  def __init__(self, stream):
    self.stream = stream

  def write(self, text: str) -> None:
    text = text.replace("\r", "").strip()
    if text:
      self.stream.write(text + "\n")

  def flush(self) -> None:
    self.stream.flush()


class Progress:
  """Progress of an experiment on stderr (tqdm): ``label  i/n [elapsed<left]``.

  On a terminal one redrawn line; elsewhere (logs) one line at most every 30 s and at the end.
  """

  def __init__(self, total: int, label: str, enabled: bool = True):
    self.bar = None
    if enabled:
      from tqdm import tqdm
      tty = sys.stderr.isatty()
      self.bar = tqdm(total=total, desc=label, unit="batch", dynamic_ncols=True,
                      file=sys.stderr if tty else _LineWriter(sys.stderr),
                      mininterval=0.1 if tty else 30.0, miniters=1, ascii=not tty)

  def update(self, n: int = 1):
    if self.bar is not None:
      self.bar.update(n)

  def close(self):
    if self.bar is not None:
      self.bar.close()


@dataclasses.dataclass
class PowerFit:
  """Exponent of ``y ~ c x^p``: estimate, 95% interval and how it was obtained."""

  p: float
  lo: float
  hi: float
  n: int
  method: str
  c: float = float("nan")

  def label(self) -> str:
    if self.n <= 1 or not np.isfinite(self.lo):
      return f"{self.p:.2f}"
    return f"{self.p:.2f} [{self.lo:.2f}, {self.hi:.2f}]"


# Two-sided 97.5% Student-t quantiles for 1..30 degrees of freedom (scipy is not a dependency).
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


def t975(df: int) -> float:
  """Upper 97.5% quantile of Student's t with ``df`` degrees of freedom."""
  return _T975[df - 1] if df <= 30 else 1.96


def loglog_slope(x, y) -> tuple[float, float]:
  """Least-squares ``(slope, intercept)`` of ``log y`` on ``log x`` (positive finite pairs)."""
  x, y = np.asarray(x, float), np.asarray(y, float)
  ok = (x > 0) & (y > 0) & np.isfinite(x) & np.isfinite(y)
  if ok.sum() < 2:
    return float("nan"), float("nan")
  p, c = np.polyfit(np.log(x[ok]), np.log(y[ok]), 1)
  return float(p), float(c)


def fit_exponent_over_seeds(x, y_seeds_by_x) -> PowerFit:
  """Exponent of ``y`` in ``x`` with a t-interval over seeds.

  Fits ``log y = p log x + c`` separately for each seed (row of ``y_seeds_by_x``, shape
  ``(n_seeds, len(x))``) and reports the mean slope with the 95% Student-t interval of the
  per-seed slopes. With one seed (or identical slopes) the interval collapses to the point.
  """
  Y = np.atleast_2d(np.asarray(y_seeds_by_x, float))
  fits = [loglog_slope(x, row) for row in Y]
  slopes = np.array([f[0] for f in fits if np.isfinite(f[0])])
  cs = np.array([f[1] for f in fits if np.isfinite(f[0])])
  if slopes.size == 0:
    return PowerFit(float("nan"), float("nan"), float("nan"), 0, "no data")
  m = float(slopes.mean())
  if slopes.size == 1:
    return PowerFit(m, float("nan"), float("nan"), 1, "one seed", float(cs.mean()))
  half = t975(slopes.size - 1) * slopes.std(ddof=1) / math.sqrt(slopes.size)
  return PowerFit(m, m - half, m + half, int(slopes.size),
                  f"t-interval over {slopes.size} per-seed log-log fits", float(cs.mean()))


def window_mean(k, avg, k1: int, k2: int) -> float:
  """Mean of a per-iteration quantity over iterations ``k1..k2-1`` from running means.

  ``avg[r]`` is the exact mean over iterations ``0..k[r]-1`` (the engine's ``avg_*``
  metrics); both ``k1`` and ``k2`` must be record points (``k1 = 0`` allowed).
  """
  k = np.asarray(k)
  avg = np.asarray(avg, float)
  i2 = int(np.where(k == k2)[0][0])
  total2 = k2 * avg[i2]
  if k1 == 0:
    return float(total2 / k2)
  i1 = int(np.where(k == k1)[0][0])
  return float((total2 - k1 * avg[i1]) / (k2 - k1))


def save_figure(fig, out_dir: str, name: str) -> list[str]:
  """Write ``name.png`` and ``name.pdf`` into ``out_dir`` (no dates in them); return the paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  for ext in ("png", "pdf"):
    path = os.path.join(out_dir, f"{name}.{ext}")
    # No creation date in the files: a rerun of a finished run writes the same bytes.
    meta = {"CreationDate": None} if ext == "pdf" else {"Software": None}
    # The plots fit themselves (tight_layout); bbox_inches="tight" would draw each figure
    # once more per file (about 0.3 s a figure).
    fig.savefig(path, dpi=130 if ext == "png" else None, metadata=meta)
    paths.append(path)
  import matplotlib.pyplot as plt
  plt.close(fig)
  return paths


# XLA:CPU options that make a compiled program give the same bits on every x86-64 machine with
# AVX2 and at any thread count (measured: LocalSGD's final losses changed in the 7th digit with
# the instruction set, and the character LM's by up to 20% at a chaotic step size, see
# BENCHMARKS.md). YNNPACK (XLA's default library for dots on CPU) picks its kernels by the
# running CPU and splits work by the thread count: the empty list turns it off, so dots use
# XLA's own emitter or single-threaded Eigen; the code generator targets AVX2 with 256-bit
# vectors whatever the CPU offers. Same CPU time measured with and without them.
DETERMINISTIC_XLA_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=",
                           "--xla_cpu_multi_thread_eigen=false")
X86_XLA_FLAGS = ("--xla_cpu_max_isa=AVX2", "--xla_cpu_prefer_vector_width=256")

# XLA:CPU code generation that compiles fast, for `rpd reproduce --quick`: the loop emitters
# instead of the MLIR fusion emitters, and LLVM at -O0. The quick run compiles about 170 small
# programs and compiling was 70% of its time; with these its compile events took 4 times less
# and the first run (empty cache) about 35% less wall and CPU time, back to back on one machine.
# The programs (the HLO) are the same; their machine code runs slower (a second run with the
# cache warm: 210 s instead of about 130 s at -O1), so the full run, whose time is running, not
# compiling, keeps XLA's default code generation (BENCHMARKS.md, session 11). Within the quick
# run, each engine and LocalSGD batch (its bulk) is compiled with the code generation
# rpd.codegen.for_work chooses for its estimated work in a process with these flags (per
# program: "fast", the loop emitters at -O1, or XLA's default; sessions 12 and 13); these flags
# set the rest (initialisations, the theory's programs). The numbers move in the last digits,
# as between two machines (paper_figures/ was regenerated with them).
FAST_COMPILE_XLA_FLAGS = codegen.xla_flags("fast")


def deterministic_xla_flags(fast_compile: bool = False) -> tuple[str, ...]:
  """The XLA flags `rpd reproduce` runs with: :data:`DETERMINISTIC_XLA_FLAGS` (plus the x86
  ones on x86-64), and with ``fast_compile`` (``--quick``) :data:`FAST_COMPILE_XLA_FLAGS`."""
  x86 = platform.machine().lower() in ("x86_64", "amd64")
  return (DETERMINISTIC_XLA_FLAGS + (X86_XLA_FLAGS if x86 else ())
          + (FAST_COMPILE_XLA_FLAGS if fast_compile else ()))


def pin_xla_cpu(fast_compile: bool = False) -> bool:
  """Add :func:`deterministic_xla_flags` (``fast_compile``: with the fast code generation of
  the quick run) to ``XLA_FLAGS`` before JAX starts its backend.

  Returns ``True`` if the flags are in effect: added now, or already in ``XLA_FLAGS`` when
  the backend had started. ``False`` if the backend started without them (a process that ran
  JAX code before; its numbers can differ from the command line's in the last digits).
  """
  flags = os.environ.get("XLA_FLAGS", "").split()
  want = [f for f in deterministic_xla_flags(fast_compile) if f not in flags]
  if not want:
    return True
  started = False
  if "jax" in sys.modules:
    from jax._src import xla_bridge
    started = bool(getattr(xla_bridge, "_backends", None))
  if started:
    return False
  os.environ["XLA_FLAGS"] = " ".join(flags + want)
  return True


def setup_jax(x64: bool = False) -> None:
  """CPU defaults for the experiments (float32 unless ``x64``)."""
  import jax
  jax.config.update("jax_enable_x64", bool(x64))
