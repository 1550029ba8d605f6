"""Activation memory models: how long a microbatch's activations are held, and how much.

* ``rpd`` (default; :data:`RPD`): a microbatch's activations on a block count whole (one unit,
  ``M_B``) from the start of its ``F`` to the end of its last backward action (``W`` when the
  backward is split, else ``B``). Under it ZB-H1 holds ``P`` (1F1B's peak) and ZB-H2 ``2P - 1``.
* ``zb`` / ``zb:R`` (:class:`ZeroBubbleMemory`): the Zero Bubble paper's accounting (Qi et
  al., 2024, arXiv 2401.10241, Table 1 and Sec. 3.1): ``F`` allocates ``M_B``, ``B`` frees
  ``M_B - M_W`` (the input gradient is done; what ``W`` still needs stays), ``W`` frees the
  remaining ``M_W``. With ``R = M_W / M_B`` and memory in units of ``M_B``, a microbatch holds
  ``1`` from the start of ``F`` to the end of ``B`` and ``R`` from there to the end of ``W``.
  The authors' own scheduler code uses ``M_B = 34h + 5as`` and ``M_W = 32h`` per token and
  layer (hidden size ``h``, heads ``a``, sequence ``s``); the default ``R`` is their GPT
  setting ``h = 4096, a = 32, s = 1024``: ``R = 32 h / (34 h + 5 a s) = 0.4324``. ``R = 1``
  is the ``rpd`` model. An unsplit backward frees everything at the end of ``B``.

The peak is the largest sum over a device's held microbatches (releases at time ``t`` before
acquisitions at ``t``), in units of one block's ``M_B``.
"""
from __future__ import annotations

import dataclasses

from rpd.errors import InputError

#: ``M_W / M_B`` of the Zero Bubble authors' GPT setting (h = 4096, a = 32, s = 1024).
ZB_PAPER_RATIO = 32 * 4096 / (34 * 4096 + 5 * 32 * 1024)


@dataclasses.dataclass(frozen=True)
class MemoryModel:
  """What a microbatch holds between ``B`` and ``W`` (``ratio``, in units of ``M_B``).

  Attributes:
    name: ``"rpd"`` or ``"zb:R"``.
    ratio: ``R = M_W / M_B`` in ``[0, 1]``; ``1`` holds everything until ``W`` ends.
  """

  name: str
  ratio: float

  def peak(self, timed) -> list[float]:
    """Peak held activation memory per device of a timed schedule (units of ``M_B``)."""
    from rpd.schedules.metrics import peak_held
    if timed.update_kind == "W":
      release = lambda m, b: [(timed.end[("B", m, b)], 1.0 - self.ratio),
                              (timed.end[("W", m, b)], self.ratio)]
    else:
      release = lambda m, b: [(timed.end[("B", m, b)], 1.0)]
    return [round(float(p), 12) for p in peak_held(timed, release)]


RPD = MemoryModel("rpd", 1.0)


def ZeroBubbleMemory(ratio: float = ZB_PAPER_RATIO) -> MemoryModel:
  """The Zero Bubble paper's model with ``R = M_W / M_B = ratio``."""
  return MemoryModel(f"zb:{ratio:.4g}", float(ratio))


def parse_memory_model(text: str) -> MemoryModel:
  """``rpd``, ``zb`` (the paper's default ratio) or ``zb:R`` with ``0 <= R <= 1``.

  Raises:
    InputError: naming the bad value.
  """
  name, sep, arg = (text or "").strip().partition(":")
  if name == "rpd" and not sep:
    return RPD
  if name == "zb":
    if not sep:
      return ZeroBubbleMemory()
    try:
      r = float(arg)
    except ValueError:
      raise InputError(f"--memory-model zb:R needs a number R = M_W/M_B, got {arg!r}") from None
    if not 0 <= r <= 1:
      raise InputError(f"--memory-model zb:R needs 0 <= R <= 1 (M_W <= M_B), got {arg!r}")
    return ZeroBubbleMemory(r)
  raise InputError(f"unknown --memory-model {text!r}; known: rpd, zb, zb:R (0 <= R <= 1)")
