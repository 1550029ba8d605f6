"""Tuned rate: for each S and K the best step size of the grid and the error it reaches.

Uses the runs of the stage sweep (same results file; nothing reruns if they are there).
Command: ``rpd reproduce --only tuned_rate [--quick]``. Expected runtime: that of the stage
sweep if it has not run, else a few seconds.
"""
from __future__ import annotations

from rpd.experiments.configs import stage_sweep


def get_config(quick: bool = False) -> dict:
  """The tuned-rate analysis configuration."""
  return dict(
      name="tuned_rate",  # figure name
      sweep=stage_sweep.get_config(quick),  # the runs it analyses
      min_record=2,  # first record point used as a K value (skips the first K/n_records)
      min_S=2,  # smallest S shown (S = 1 has no delay: S^4/K is not the relevant scale)
  )
