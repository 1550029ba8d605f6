"""``rpd reproduce``: run every experiment of the paper and write its figures and tables.

Experiments (``experiments/``, configurations in ``experiments/configs/``): the stage sweep,
the tuned rate (from the stage sweep's runs), the critical step size, and PipeDream versus
LocalSGD in simulated time. Each finished configuration is appended to
``OUT/results/NAME.MODE.jsonl`` (``MODE`` = quick or full), so a rerun (or a run after Ctrl-C)
skips what is done. Writes ``OUT/NAME.png`` and ``.pdf`` for every figure, ``OUT/results.csv``
(one row per plotted quantity), ``OUT/README.md`` (figures, commands, runtimes, findings) and
``OUT/SOURCES.json`` (hashes of the code that made them; see ``rpd.experiments.stamp``).
With ``--only`` the other experiments do not run, but their figures are redrawn from their
saved results (if any), so the README and the CSV always cover everything in ``OUT``.
"""
from __future__ import annotations

import argparse
import csv
import importlib
import os
import sys
import threading
import time

from rpd import jsonout
from rpd.errors import InputError

NAME = "reproduce"
HELP = "run the paper's experiments and write every figure, a results CSV and a README"

# (driver module, config module) in run order; tuned_rate reuses stage_sweep's runs.
EXPERIMENTS = ("stage_sweep", "tuned_rate", "critical_gamma", "pd_vs_localsgd",
               "mitigations",  # which staleness mitigation helps (issue 10)
               "stability")  # exact stability thresholds and stale excess vs S (issue 11)
_STORE_OF = {"tuned_rate": "stage_sweep"}
# Experiments run together in one lane (tuned_rate plots stage_sweep's runs, so it follows it).
_AFTER = {"tuned_rate": "stage_sweep"}
# Lanes take experiments in this order, the costliest first (measured CPU seconds of
# --quick with an empty cache, BENCHMARKS.md), so the last one to start is a short one.
_COST_ORDER = ("pd_vs_localsgd", "stage_sweep", "mitigations", "critical_gamma", "stability")


def add_arguments(p: argparse.ArgumentParser) -> None:
  """Options of ``rpd reproduce``."""
  p.add_argument("--quick", action="store_true",
                 help="lower resolution: fewer stages, step sizes, seeds and iterations "
                      "(its measured time: paper_figures/README.md; "
                      "benchmarks/bench_reproduce.py measures it)")
  p.add_argument("--out", default="paper_figures",
                 help="output directory (default: paper_figures)")
  p.add_argument("--only", default=None,
                 help=f"comma-separated subset of: {', '.join(EXPERIMENTS)}")
  p.add_argument("--text", default=None, metavar="PATH",
                 help="train the character LM on this UTF-8 text file instead of the bundled "
                      "Markov source (its best achievable loss is then unknown)")
  p.add_argument("--jobs", type=_jobs_arg, default=None, metavar="N",
                 help="experiments run at the same time, each in a thread of its own (XLA "
                      "compiles and runs outside Python's lock, so they use N cores; the "
                      "results do not depend on it); default: min(2, CPU cores); 1: one "
                      "after another")
  p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
  p.add_argument("--json", action="store_true", help=jsonout.JSON_HELP)


def _jobs_arg(text: str) -> int:
  from rpd.cli import positive_int
  return positive_int("--jobs")(text)


def _csv(path: str, rows: list[dict]) -> None:
  cols: list[str] = []
  for r in rows:
    cols += [k for k in r if k not in cols]
  with open(path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=cols)
    w.writeheader()
    for r in rows:
      w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def _with_text(cfg: dict, path: str) -> dict:
  """``cfg`` with every character-LM objective trained on the text file ``path``."""
  probs = cfg.get("problems")
  if not probs:
    return cfg
  new = []
  for p in probs:
    if p.get("name") == "charlm":
      p = dict(p, label=f"character LM ({os.path.basename(path)})",
               options=dict(p.get("options", {}), text=os.path.abspath(path)))
    new.append(p)
  return dict(cfg, problems=new)


def _text_window() -> int:
  """The largest context window ``C`` of the character-LM objectives of the configs."""
  import inspect

  from rpd.problems.charlm import make_charlm
  C = inspect.signature(make_charlm).parameters["C"].default
  for name in EXPERIMENTS:
    cfg = importlib.import_module(f"rpd.experiments.configs.{name}").get_config(False)
    for p in cfg.get("problems", []):
      if p.get("name", "").startswith("charlm"):
        C = max(C, p.get("options", {}).get("C", C))
  return C


def _meta() -> dict:
  """Commit, versions and date of this run (the rows in results/ carry their own)."""
  from rpd.experiments.common import metadata
  return metadata()


def _devices() -> str:
  import jax
  devs = jax.devices()
  return f"{len(devs)} JAX {devs[0].platform.upper()} device{'s' if len(devs) > 1 else ''}"


class _Programs:
  """Counts the programs JAX compiles and those the persistent cache served (jax.monitoring;
  the listeners are registered once per process, each run counts from its start)."""

  _counts = None

  def __init__(self):
    if _Programs._counts is None:
      import jax.monitoring as mon
      counts = _Programs._counts = {"compiled": 0, "cached": 0}
      lock = threading.Lock()  # experiments may compile in several threads (--jobs)

      def duration(event, secs, **_):
        if event == "/jax/core/compile/backend_compile_duration":
          with lock:
            counts["compiled"] += 1

      def hit(event, **_):
        if event == "/jax/compilation_cache/cache_hits":
          with lock:
            counts["cached"] += 1

      mon.register_event_duration_secs_listener(duration)
      mon.register_event_listener(hit)
    self._start = dict(_Programs._counts)
    # was the persistent cache empty when this run started? (hits can then only be programs
    # compiled earlier in the same run, e.g. by another --jobs lane)
    # (JAX's own settings: set from the environment before JAX was imported, or by
    # rpd.cache.enable after, as when a benchmark calls the command in its process)
    import jax
    folder = (jax.config.jax_compilation_cache_dir
              if jax.config.jax_enable_compilation_cache else None)
    self.started_empty = bool(folder) and (not os.path.isdir(folder) or not os.listdir(folder))

  @property
  def compiled(self) -> int:
    return _Programs._counts["compiled"] - self._start["compiled"]

  @property
  def cached(self) -> int:
    return _Programs._counts["cached"] - self._start["cached"]

  def sentence(self) -> str:
    if self.compiled == 0:
      return "no program compiled (every configuration reused)"
    if self.cached == 0:
      return (f"{self.compiled} programs compiled, none from the persistent compilation "
              "cache (an empty or disabled cache: the time of a fresh clone's first run)")
    if self.started_empty:
      return (f"{self.compiled} programs, from a persistent compilation cache that was empty "
              f"at the start (the time of a fresh clone's first run; {self.cached} of them "
              "were compiled earlier in this run and loaded)")
    return (f"{self.compiled} programs, {self.cached} of them loaded from the persistent "
            "compilation cache (a warm cache: faster than a fresh clone's first run)")


def _readme(out_dir: str, mode: str, entries: list[dict], total_s: float, cpu_s: float,
            programs: str = "") -> str:
  cmd = "rpd reproduce" + (" --quick" if mode == "quick" else "")
  lines = [
      "# Figures of the staleness theory, reproduced",
      "",
      f"Generated by `{cmd} --out {out_dir}` (this file is written by the command; do not "
      "edit). Every number below is computed from the runs in `results/`; `results.csv` "
      "holds the plotted values.",
      "",
      f"Mode: **{mode}**. Total runtime of the run that wrote this file: {total_s:.0f} s wall, "
      f"{cpu_s:.0f} s CPU time (user + system; wall time grows when the machine is shared) on "
      f"{os.cpu_count()} CPU cores ({_meta()['cpu']}) with {_devices()}; {programs} (a resumed "
      "run reuses finished "
      "configurations and is faster; `results/*.jsonl` hold each row's metadata; they are "
      "not committed, so a fresh clone recomputes everything).",
      "",
      "Made by: commit `{commit}`, jax {jax}, Python {python}, {time}.".format(**_meta()),
      "",
  ]
  for e in entries:
    for fig in e["figures"]:
      if fig.endswith(".png"):
        name = os.path.basename(fig)
        lines += [f"## {name[:-4]}", "", f"![{name[:-4]}]({name})", ""]
    lines += [
        f"- **Command:** `{cmd} --only {e['name']}` (config: `experiments/configs/"
        f"{e['name']}.py`)",
        (f"- **Runtime:** {e['runtime_s']:.0f} s in this run ({e['ran']} configurations run, "
         f"the rest reused)" if e["selected"] else
         "- **Runtime:** not selected in this run (figure redrawn from its saved results)"),
        f"- **Shows:** {e['doc']}",
        f"- **Finding:** {e['finding']}",
        f"- **Files:** " + ", ".join(f"`{os.path.basename(f)}`" for f in e["figures"]),
        "",
    ]
  return "\n".join(lines)


def run(args) -> int:
  """Run the selected experiments, then write figures, CSV and README."""
  names = list(EXPERIMENTS)
  if args.only:
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    bad = [n for n in names if n not in EXPERIMENTS]
    if bad:
      raise InputError(f"--only: unknown experiment {bad[0]!r}; known: {', '.join(EXPERIMENTS)}")
  out_dir = args.out
  from rpd.experiments.common import pin_xla_cpu
  # same bits on every machine, and --quick compiles fast (before JAX starts its backend)
  pin_xla_cpu(fast_compile=args.quick)
  from rpd.guards import check_writable_dir
  check_writable_dir(out_dir, "--out")
  if args.text is not None:
    from rpd.problems.charlm import read_text
    try:  # before any training (the LM is the last experiment) and before writing anything
      read_text(args.text, _text_window())
    except ValueError as e:
      raise InputError(f"--text: {e}") from None
  try:
    os.makedirs(os.path.join(out_dir, "results"), exist_ok=True)
  except OSError as e:
    raise InputError(f"--out: cannot create {out_dir!r}: {e}") from None
  from rpd.experiments.common import deferred_sigint
  with deferred_sigint():  # Ctrl-C stops between batches: exit 130, finished rows kept
    return _run(args, names, out_dir)


def _lanes_of(names: list[str]) -> list[list[str]]:
  """The experiments of ``names`` as units that run one after another (an experiment and
  those that follow it, :data:`_AFTER`), the costliest first (:data:`_COST_ORDER`)."""
  units = [[n] + [m for m in names if _AFTER.get(m) == n] for n in names if n not in _AFTER]
  units += [[m] for m in names if m in _AFTER and _AFTER[m] not in names]
  rank = {n: i for i, n in enumerate(_COST_ORDER)}
  return sorted(units, key=lambda u: rank.get(u[0], len(rank)))


_PLOT_LOCK = threading.Lock()  # matplotlib's pyplot keeps global state: one figure at a time


def _experiment(args, name: str, names: list[str], out_dir: str, mode: str, jobs: int = 1):
  """Run (if selected) and plot one experiment; ``None`` if it has nothing to plot."""
  from rpd.experiments.common import ResultsStore  # JAX's default dtype: float32 from the shell
  driver = importlib.import_module(f"rpd.experiments.{name}")
  cfg = importlib.import_module(f"rpd.experiments.configs.{name}").get_config(args.quick)
  if args.text is not None:
    cfg = _with_text(cfg, args.text)
  path = os.path.join(out_dir, "results", f"{_STORE_OF.get(name, name)}.{mode}.jsonl")
  if name not in names and not os.path.exists(path):
    return None  # not selected and never run: nothing to plot
  store = ResultsStore(path)
  t0 = time.time()
  ran = 0
  if name in names:
    import inspect
    kw = {"jobs": jobs} if "jobs" in inspect.signature(driver.run).parameters else {}
    ran = driver.run(cfg, store, progress=not args.no_progress, **kw)
  with _PLOT_LOCK:
    res = driver.plot(cfg, store, out_dir)
  if not args.no_progress:
    print(f"{name}: {res['finding']}", file=sys.stderr)
  entry = dict(name=name, figures=res["figures"], finding=res["finding"], ran=ran,
               runtime_s=time.time() - t0, doc=driver.FIGURE_DOC, selected=name in names)
  return entry, res["table"]


def _run_all(args, names: list[str], out_dir: str, mode: str) -> dict:
  """``{name: (entry, table)}`` of every experiment, in ``--jobs`` lanes.

  With one lane (or one unit of work) everything runs in this thread, in the order of
  :data:`EXPERIMENTS`. Otherwise each lane is a thread that takes the next unit of
  :func:`_lanes_of` when it is free, and at most ``--jobs`` batches run at once in all
  lanes together (:func:`rpd.experiments.common.batch_slots`). Ctrl-C (:func:`rpd.experiments.common.deferred_sigint`)
  stops every lane after its current batch; an error in one lane stops the others the same
  way and is raised here. Every experiment writes its own results file and figures.
  """
  jobs = args.jobs or min(2, os.cpu_count() or 1)
  units = _lanes_of(list(EXPERIMENTS))
  busy = [u for u in units if any(n in names for n in u)]
  done: dict = {}
  if jobs == 1 or len(busy) <= 1:
    for name in EXPERIMENTS:
      done[name] = _experiment(args, name, names, out_dir, mode, jobs)
    return done
  from concurrent.futures import ThreadPoolExecutor
  from rpd.experiments import common
  queue = list(units)
  lock = threading.Lock()
  errors: list[BaseException] = []

  def lane():
    while True:
      with lock:
        if not queue or errors:
          return
        unit = queue.pop(0)
      for name in unit:
        try:  # an experiment that runs its batches in threads (pd_vs_localsgd) gets --jobs
          done[name] = _experiment(args, name, names, out_dir, mode, jobs)
        except BaseException as e:  # noqa: BLE001 -- raised again by the main thread
          with lock:
            errors.append(e)
          common.stop_batches()  # the other lanes stop after their current batch
          return

  import warnings
  with warnings.catch_warnings(), common.batch_slots(jobs), \
       ThreadPoolExecutor(min(jobs, len(busy)), thread_name_prefix="rpd-lane") as ex:
    # Two threads compiling the same small program (a broadcast, a conversion) at once: one
    # can read the persistent-cache file the other is still writing; JAX then warns and
    # compiles it again (harmless, the file is complete once written).
    warnings.filterwarnings("ignore", message="Error reading persistent compilation cache",
                            category=UserWarning)
    for f in [ex.submit(lane) for _ in range(min(jobs, len(busy)))]:
      f.result()
  if errors:
    first = next((e for e in errors if not isinstance(e, common.Interrupted)), errors[0])
    raise first
  return done


def _run(args, names: list[str], out_dir: str) -> int:
  mode = "quick" if args.quick else "full"
  entries, table = [], []
  programs = _Programs()
  t_all, cpu0 = time.time(), sum(os.times()[:2])
  done = _run_all(args, names, out_dir, mode)
  for name in EXPERIMENTS:  # the README and the CSV in one order, however the lanes ran
    if done.get(name) is not None:
      entries.append(done[name][0])
      table += done[name][1]
  total = time.time() - t_all
  _csv(os.path.join(out_dir, "results.csv"), table)
  with open(os.path.join(out_dir, "README.md"), "w") as f:
    f.write(_readme(out_dir, mode, entries, total, sum(os.times()[:2]) - cpu0,
                    programs.sentence()))
  from rpd.experiments.stamp import write_stamp  # which code made these (SOURCES.json)
  write_stamp(out_dir, mode, [e["name"] for e in entries])
  summary = {"mode": mode, "out": out_dir, "runtime_s": round(total, 1),
             "experiments": [{k: (round(v, 1) if k == "runtime_s" else v) for k, v in e.items()
                              if k != "doc"} for e in entries],
             "csv": os.path.join(out_dir, "results.csv"),
             "readme": os.path.join(out_dir, "README.md")}
  if args.json:
    print(jsonout.dumps(summary))
  else:
    print(f"wrote {len([f for e in entries for f in e['figures']])} figure files, "
          f"results.csv and README.md to {out_dir} in {total:.0f} s")
  return 0
