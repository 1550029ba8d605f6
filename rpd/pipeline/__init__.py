"""A real pipeline: every schedule of :mod:`rpd.schedules` executed device by device.

``plan`` compiles a schedule's action lists (the lists the simulator times) onto a tick
clock, ``executor`` runs them as one SPMD program (``shard_map``, ``ppermute`` between
devices, each device running only its own blocks).
"""
from rpd.pipeline.executor import ExecResult, execute, stage_mesh
from rpd.pipeline.plan import REFUSED, SUPPORTED, Plan, build_plan, pad_together

__all__ = ["REFUSED", "SUPPORTED", "Plan", "build_plan", "pad_together", "ExecResult",
           "execute", "stage_mesh"]
