"""Checks made before any work starts: output paths, sizes, and after a run: blow-up.

Everything here raises :class:`rpd.errors.InputError` (one line, exit code 2) *before* a
command allocates, trains or writes anything, so a bad value never costs a long run.

* Output paths: :func:`check_writable_dir` finds the nearest existing ancestor of a directory
  that does not exist yet and checks that it is a writable directory (nothing is created).
* Memory: :func:`check_memory` compares an estimate of the largest arrays a run will hold
  with half of the machine's physical memory (:func:`memory_limit_bytes`).
* Time: building a pipeline schedule's program or delay table simulates every microbatch of
  a steady state; it costs about ``S^3`` operations (measured on a 2-core CPU: 0.3 s at
  ``S = 64``, 10-28 s at ``S = 256``, about a minute at ``S = 512``), so simulated schedules
  are limited to :data:`MAX_SIMULATED_STAGES` stages.
* Divergence by growth: :func:`blowup_index` flags a run whose loss stays finite but moves
  away from the reference by more than :data:`GROWTH_FACTOR` times its initial distance.
"""
from __future__ import annotations

import hashlib
import json
import os
import re

import numpy as np

from rpd.errors import InputError

MAX_SIMULATED_STAGES = 256
#: ``rpd schedules``: at most this many microbatches per simulated run.
MAX_SCHEDULE_MICROBATCHES = 4096
#: ``rpd schedules``: at most this many (device, chunk, microbatch) cells ``P V M`` per run
#: (every schedule simulates about ``3 P V M`` actions, and its steady state more; measured
#: on the loaded 2-core CPU: pipedream-2bw 3.9 s of CPU at ``P = 16, M = 256``, over 3 min
#: at ``P = 64, M = 512``).
MAX_SCHEDULE_CELLS = 2**12
GROWTH_FACTOR = 1e6
#: ``rpd theory stability``: largest S (measured on the loaded 2-core CPU, isotropic,
#: ``--no-measure``: 2.4 s of CPU at S = 32, 6.6 s at 48, 17 s at 64; the measured runs add
#: about 56 s at S = 32).
MAX_STABILITY_STAGES = 32

#: file types a figure may be written as (matplotlib's raster and vector formats).
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".svgz", ".jpg", ".jpeg", ".eps", ".ps", ".tif",
                   ".tiff", ".webp")


def check_writable_dir(path: str, what: str) -> None:
  """``path`` is a writable directory, or can be created as one.

  Probes the directory (or its nearest existing ancestor) by creating and at once deleting an
  anonymous temporary file there (``os.access`` says yes to root everywhere, even on /proc).
  """
  import tempfile
  probe = os.path.abspath(path)
  if os.path.exists(probe) and not os.path.isdir(probe):
    raise InputError(f"{what} {path!r} exists and is not a directory")
  parent = probe
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise InputError(f"{what} {path!r} cannot be created: {parent!r} is not a directory")
  try:
    with tempfile.TemporaryFile(dir=parent):
      pass
  except OSError as e:
    raise InputError(f"{what} {path!r} is not writable ({parent!r}: "
                     f"{e.strerror or e})") from None


def check_output_file(path: str, what: str, suffixes: tuple[str, ...] | None = None) -> None:
  """``path`` can be written as a file: its folder exists and is writable, it is not a folder,
  and its name ends in one of ``suffixes`` (when given). Nothing is created.

  Raises:
    InputError: one line naming ``path`` and what is wrong, before any work.
  """
  if not path:
    raise InputError(f"{what} needs a file name, got {path!r}")
  full = os.path.abspath(path)
  if os.path.isdir(full) or path.endswith(os.sep):
    raise InputError(f"{what} {path!r} is a folder; need a file name")
  if suffixes is not None and os.path.splitext(path)[1].lower() not in suffixes:
    raise InputError(f"{what} {path!r}: unknown file type; use one of {', '.join(suffixes)}")
  folder = os.path.dirname(full)
  if not os.path.isdir(folder):
    raise InputError(f"{what} {path!r}: folder {os.path.dirname(path) or '.'!r} does not exist "
                     "(create it first)")
  check_writable_dir(folder, what)
  if os.path.exists(full) and not os.access(full, os.W_OK):
    raise InputError(f"{what} {path!r} exists and is not writable")


#: ``rpd pipeline --microbatches``: the executor's plan holds a tick table per microbatch.
MAX_PIPELINE_MICROBATCHES = 2**20
#: ``rpd theory check --seeds``: each seed is a run of every configuration (default 8).
MAX_THEORY_SEEDS = 64


def check_count(value: int, what: str, limit: int, why: str) -> None:
  """Refuse a count above its stated ``limit`` at once (one line naming value and limit)."""
  if value > limit:
    raise InputError(f"{what} {value}: at most {limit} ({why})")


def check_stability_stages(S: int) -> None:
  """``rpd theory stability --stages S``: refuse ``S > MAX_STABILITY_STAGES`` at once."""
  if S > MAX_STABILITY_STAGES:
    raise InputError(f"--stages {S}: the exact stability computation grows fast with S "
                     f"(17 s of CPU at S = 64); use S <= {MAX_STABILITY_STAGES}")


def check_schedule_size(P: int, M: int, V: int) -> None:
  """The sizes of ``rpd schedules``, checked at once: ``P V <= MAX_SIMULATED_STAGES`` blocks,
  ``M <= MAX_SCHEDULE_MICROBATCHES`` and ``P V M <= MAX_SCHEDULE_CELLS``.

  Raises:
    InputError: naming the size and its limit.
  """
  if P * V > MAX_SIMULATED_STAGES:
    raise InputError(f"--stages {P} x --chunks {V} = {P * V} blocks: simulating a schedule of "
                     f"S blocks costs about S^3 operations; use P V <= {MAX_SIMULATED_STAGES}")
  if M > MAX_SCHEDULE_MICROBATCHES:
    raise InputError(f"--microbatches {M}: at most {MAX_SCHEDULE_MICROBATCHES} per simulated run")
  if P * V * M > MAX_SCHEDULE_CELLS:
    raise InputError(f"--stages {P} x --chunks {V} x --microbatches {M} = {P * V * M} cells: "
                     f"at most {MAX_SCHEDULE_CELLS} per run (each schedule simulates about "
                     "3 P V M actions)")


def memory_limit_bytes() -> int:
  """Half of the physical memory (``RPD_MEMORY_LIMIT_GB`` overrides it)."""
  env = os.environ.get("RPD_MEMORY_LIMIT_GB")
  if env:
    return int(float(env) * 2**30)
  try:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
  except (ValueError, OSError, AttributeError):
    return 8 * 2**30


def check_memory(n_floats: float, what: str, itemsize: int = 4) -> None:
  """Refuse when ``n_floats`` numbers of ``itemsize`` bytes exceed :func:`memory_limit_bytes`."""
  need = float(n_floats) * itemsize
  limit = memory_limit_bytes()
  if need > limit:
    raise InputError(f"{what}: needs about {need / 2**30:.3g} GiB, more than the limit of "
                     f"{limit / 2**30:.3g} GiB (half the physical memory; RPD_MEMORY_LIMIT_GB "
                     "sets it)")


def check_simulated_stages(S: int, what: str) -> None:
  """Refuse ``S > MAX_SIMULATED_STAGES`` for work that simulates a schedule (about S^3)."""
  if S > MAX_SIMULATED_STAGES:
    raise InputError(f"{what} {S}: simulating a schedule of S stages costs about S^3 "
                     f"operations (minutes beyond S = {MAX_SIMULATED_STAGES}); use "
                     f"S <= {MAX_SIMULATED_STAGES}")


def blowup_index(losses, f_star: float | None, factor: float = GROWTH_FACTOR) -> int | None:
  """Index of the first record whose loss is non-finite or has grown away from the reference.

  With ``r = f*`` when known, else ``0``, and the scale
  ``s = max(|f(x^0) - r|, 1e-3 (1 + |f(x^0)|))`` (the floor keeps a run started at the
  minimizer from being flagged for noise), record ``k`` has blown up when
  ``|f(x^k) - r| > factor * s``. Returns ``None`` if no record has.
  """
  y = np.asarray(losses, np.float64)
  if y.size == 0:
    return None
  bad = ~np.isfinite(y)
  f0 = y[0]
  if np.isfinite(f0):
    ref = 0.0 if f_star is None else float(f_star)
    scale = max(abs(f0 - ref), 1e-3 * (1.0 + abs(f0)))
    with np.errstate(invalid="ignore"):
      bad |= np.abs(y - ref) > factor * scale
  idx = np.flatnonzero(bad)
  return int(idx[0]) if idx.size else None


def _num(x: float) -> str:
  """A float for a path: ``1e+06 -> 1e6``, ``1e-06 -> 1e-6``, ``0.01 -> 0.01``."""
  s = f"{x:g}"
  return re.sub(r"e([+-])0*(\d)", lambda m: "e" + ("-" if m.group(1) == "-" else "") + m.group(2), s)


def run_dir_name(fields: dict, named: tuple[tuple[str, str], ...]) -> str:
  """A directory name unique per configuration: the ``named`` ``(label, field)`` pairs in a
  readable prefix, then 8 hex digits of a hash of *all* ``fields`` (so that any other
  difference gives another name)."""
  parts = []
  for label, k in named:
    v = fields[k]
    parts.append(f"{label}{_num(v) if isinstance(v, float) else v}")
  digest = hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode())
  tag = "_".join(parts) + "_" + digest.hexdigest()[:8]
  return re.sub(r"[^A-Za-z0-9_.=+-]+", "-", tag)


def check_train_args(args) -> None:
  """Sizes of ``rpd train`` known from its arguments alone, checked before anything is built.

  ``K = --steps`` fits the engine's int32 iteration counter. Synthetic data: the quadratic holds ``A`` dense (``d^2`` numbers, ``d <= 2048``) or as its
  diagonal (``d``); logistic regression holds ``X`` (``n d``). Pipeline rules (``pipedream``,
  ``sync``, ``schedule:NAME``) simulate their schedule: ``S <= MAX_SIMULATED_STAGES``.
  """
  if args.steps > 2**31 - 1:
    raise InputError(f"--steps {args.steps}: the iteration counter is int32 (at most "
                     f"{2**31 - 1}), and such a run would take days")
  name, sep, _ = args.problem.partition(":")
  if not sep:
    d = args.dim
    if name == "quadratic":
      check_memory(d * d if d <= 2048 else 2 * d, f"--problem quadratic with --dim {d}")
    elif name == "logistic":
      check_memory(args.samples * (d + 1),
                   f"--problem logistic with --samples {args.samples} --dim {d}")
  rule = args.rule.partition(":")[0]
  if rule in ("pipedream", "sync", "schedule"):
    check_simulated_stages(args.stages, f"--stages (rule {args.rule})")


def check_train_buffers(problem, rule) -> None:
  """The delay buffers of a built rule (``rpd.engine.buffer_floats``), before allocating."""
  from rpd.engine import buffer_floats
  n = buffer_floats(rule, problem.D)
  check_memory(n, f"the delay buffers of rule {rule.name} (tau_max = {rule.tau_max}, "
                  f"block width D = {problem.D})")
