"""A real pipeline: schedules executed stage-per-device as one SPMD program.

``plan`` places a schedule's action lists on a tick clock, ``executor`` runs them with
``shard_map`` and ``ppermute`` (one stage per device), ``equivalence`` states the exact
correspondence with the engine's ``pipedream`` and ``sync`` rules.
"""
from rpd.pipeline.equivalence import engine_updates, engine_window
from rpd.pipeline.executor import ExecResult, execute, stage_mesh
from rpd.pipeline.plan import SUPPORTED, Plan, build_plan

__all__ = ["SUPPORTED", "Plan", "build_plan", "ExecResult", "execute", "stage_mesh",
           "engine_updates", "engine_window"]
