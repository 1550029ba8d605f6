"""Interleaved 1F1B (Megatron-LM; Narayanan et al., 2021, arXiv 2104.04473)."""
from __future__ import annotations

from rpd.schedules.core import Action, Schedule, ScheduleNotApplicable
from rpd.schedules.semantics import SYNC_FLUSH


def interleaved_pass(P: int, V: int, k: int, forward: bool, p: int, kind: str,
                     round_size: int | None = None) -> Action:
  """Pass ``k`` of device ``p`` in Megatron's interleaved numbering with rounds of
  ``n = round_size`` microbatches (default ``P``): microbatch ``(k // (n V)) n + k % n``,
  forward chunk ``(k // n) % V``, backward chunk ``V - 1 - (k // n) % V``."""
  n = round_size or P
  chunk = (k % (n * V)) // n
  if not forward:
    chunk = V - 1 - chunk
  return Action(p, kind, (k // (n * V)) * n + k % n, chunk)


def round_size(P: int, M: int) -> int:
  """Microbatches per round: ``P`` when ``P`` divides ``M`` (Megatron); else PyTorch's
  relaxation (``ScheduleInterleaved1F1B``): ``R = max(1, M // P)`` rounds of ``M / R``
  microbatches, which needs ``R`` to divide ``M`` (P = 8: M = 6, 10, 15 run in one round;
  P = 5, M = 24: 4 rounds of 6; P = 4, M = 9: refused)."""
  R = max(1, M // P)
  return M // R


def check_interleaved(what: str, P: int, M: int, V: int) -> None:
  """Interleaved schedules need ``V >= 2`` chunks and ``M`` a multiple of its number of
  rounds ``max(1, M // P)`` (:func:`round_size`; Megatron: a multiple of ``P``)."""
  if V < 2:
    raise ScheduleNotApplicable(f"{what} needs --chunks V >= 2, got V={V}")
  R = max(1, M // P)
  if M % R:
    raise ScheduleNotApplicable(f"{what} needs M a multiple of its rounds max(1, M // P) = "
                                f"{R} (PyTorch's rule; Megatron's: a multiple of P), got "
                                f"M={M}, P={P}")


class Interleaved1F1B(Schedule):
  """Megatron-LM's interleaved 1F1B: ``V`` chunks per device, block ``b = c P + p``.

  Megatron's order (``forward_backward_pipelining_with_interleaving``): the ``M V`` chunk
  passes of a device are numbered ``k = 0 .. M V - 1``; pass ``k`` belongs to microbatch
  ``(k // (P V)) P + k % P`` and, for forwards, chunk ``(k // P) % V`` (backwards visit the
  chunks in reverse, ``V - 1 - (k // P) % V``). Device ``p`` runs
  ``min(2 (P - 1 - p) + (V - 1) P, M V)`` warm-up forwards (all ``M V`` if ``M = P``), then
  alternates forward ``k + warm-up`` and backward ``k``, then drains. Megatron requires
  ``M`` to be a multiple of ``P``; ``V >= 2`` (with ``V = 1`` it is 1F1B with a different
  warm-up). Synchronous, one update per batch.

  ``M`` not a multiple of ``P``: PyTorch's ``ScheduleInterleaved1F1B`` runs ``R = max(1,
  M // P)`` rounds of ``n = M / R`` microbatches (:func:`round_size`) with the same order,
  ``n`` in place of ``P`` in the numbering and the warm-up ``min(2 (P - 1 - p) + (V - 1) n,
  M V)``; the order then equals PyTorch's per-rank compute order (tests/data).

  Megatron's bubble: ``(P - 1)(t_f + t_b) / V`` per device with ``t_f, t_b`` the times of a
  full device (all ``V`` chunks), i.e. ``(P - 1)/(V M)`` of the ideal compute time, which is
  ``(P - 1)/(V M + P - 1)`` of the total. The timing pass takes per-chunk durations
  (:func:`rpd.schedules.metrics.timing_durations` divides a device's by ``V``).
  """

  name = "interleaved-1f1b"
  semantics = SYNC_FLUSH
  chunked = True
  reference = "Narayanan et al. 2021 (Megatron-LM interleaved)"

  def check(self, P: int, M: int, V: int = 1) -> None:
    """Needs ``V >= 2`` and ``M`` a multiple of ``max(1, M // P)`` (PyTorch's rule)."""
    super().check(P, M, V)
    check_interleaved("interleaved 1F1B", P, M, V)

  def actions(self, P: int, M: int, V: int = 1) -> list[list[Action]]:
    """Megatron's per-device order (see the class docstring)."""
    self.check(P, M, V)
    total = M * V
    n = round_size(P, M)

    def pass_of(k: int, forward: bool, p: int, kind: str) -> Action:
      return interleaved_pass(P, V, k, forward, p, kind, n)

    out = []
    for p in range(P):
      warm = total if M == P else min(2 * (P - 1 - p) + (V - 1) * n, total)
      acts = [pass_of(k, True, p, "F") for k in range(warm)]
      for k in range(total - warm):
        acts.append(pass_of(k + warm, True, p, "F"))
        acts.append(pass_of(k, False, p, "B"))
      acts.extend(pass_of(k, False, p, "B") for k in range(total - warm, total))
      out.append(acts)
    return out
