"""Reading the user's array files: every problem is one :class:`rpd.errors.InputError` line.

``load_array`` reads one ``.npy`` array (``--x0``, ``table:FILE.npy``); ``load_npz`` reads the
named arrays of one ``.npz`` archive (``quadratic:FILE.npz``, ``logistic:FILE.npz``). Both
check, before anything is built from the data: the file exists and is of the expected kind (an
``.npz`` archive where an ``.npy`` array is expected is named as such), no pickled objects, a
real numeric dtype (booleans, strings, complex numbers and objects are refused), the number of
dimensions, no empty array, finite entries, and for integer arrays that every entry fits in
int32 (the engine's index type). The message names the file and what is wrong with it.
"""
from __future__ import annotations

import zipfile

import numpy as np

from rpd.errors import InputError

_INT32 = np.iinfo(np.int32)


def _check(arr: np.ndarray, what: str, path: str, ndim: int | None, kind: str) -> np.ndarray:
  """Validate one array (see the module docstring); ``kind``: ``"f"`` real, ``"i"`` integer."""
  where = f"{what} {path!r}"
  if arr.dtype == np.bool_:
    raise InputError(f"{where}: a boolean array; need {'integers' if kind == 'i' else 'numbers'}")
  if arr.dtype.kind not in "iuf":
    raise InputError(f"{where}: dtype {arr.dtype} is not a real number type")
  if ndim is not None and arr.ndim != ndim:
    raise InputError(f"{where}: need a {ndim}-d array, got shape {arr.shape}")
  if arr.size == 0:
    raise InputError(f"{where}: empty array (shape {arr.shape})")
  if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
    raise InputError(f"{where}: has non-finite entries (nan or inf)")
  if kind == "i":
    if arr.dtype.kind == "f":
      if not np.all(arr == np.round(arr)):
        raise InputError(f"{where}: entries must be integers")
    lo, hi = arr.min(), arr.max()
    if lo < _INT32.min or hi > _INT32.max:
      bad = hi if hi > _INT32.max else lo
      raise InputError(f"{where}: entry {int(bad) if arr.dtype.kind != 'f' else bad} does not "
                       "fit in int32")
    arr = arr.astype(np.int64)
  return arr


_NPY_MAGIC, _ZIP_MAGIC = b"\x93NUMPY", b"PK"


def _sniff(path: str, what: str) -> str:
  """``"npy"``, ``"npz"`` or ``"other"`` from the first bytes of the file."""
  try:
    with open(path, "rb") as f:
      head = f.read(6)
  except OSError as e:
    raise InputError(f"{what} {path!r}: cannot read: {e.strerror or e}") from None
  return "npy" if head == _NPY_MAGIC else "npz" if head.startswith(_ZIP_MAGIC) else "other"


def load_array(path: str, what: str, *, ndim: int | None = None, kind: str = "f") -> np.ndarray:
  """The ``.npy`` array at ``path``, validated (see the module docstring).

  Args:
    path: the file.
    what: how the message names it (e.g. ``"--x0"``, ``"delay table"``).
    ndim: the required number of dimensions (``None``: any).
    kind: ``"f"`` (real numbers, returned as they are) or ``"i"`` (integers, or floats with
      integral values; returned as int64).

  Raises:
    InputError: one line naming the file and the problem.
  """
  kind_of_file = _sniff(path, what)
  if kind_of_file == "npz":
    raise InputError(f"{what} {path!r}: an .npz archive; need one .npy array (np.save)")
  if kind_of_file == "other":
    raise InputError(f"{what} {path!r}: cannot read: not a .npy file (no NumPy header; write it with np.save)")
  try:
    arr = np.load(path, allow_pickle=False)
  except (OSError, EOFError) as e:
    raise InputError(f"{what} {path!r}: cannot read: {e.strerror or e}") from None
  except ValueError as e:  # pickled objects, a text file, a truncated header
    raise InputError(f"{what} {path!r}: not a .npy array ({str(e).splitlines()[0]})") from None
  if isinstance(arr, np.lib.npyio.NpzFile):
    arr.close()
    raise InputError(f"{what} {path!r}: an .npz archive; need one .npy array (np.save)")
  return _check(np.asarray(arr), what, path, ndim, kind)


def load_npz(path: str, what: str, names: dict[str, int]) -> dict[str, np.ndarray]:
  """The arrays ``names`` (name -> required ndim) of the ``.npz`` archive at ``path``, each
  validated as real numbers (see the module docstring).

  Raises:
    InputError: one line naming the file and the problem.
  """
  kind_of_file = _sniff(path, what)
  if kind_of_file == "npy":
    raise InputError(f"{what} {path!r}: a single .npy array; need an .npz archive with arrays "
                     f"{', '.join(names)} (np.savez)")
  if kind_of_file == "other":
    raise InputError(f"{what} {path!r}: cannot read: not an .npz archive (write it with np.savez)")
  try:
    z = np.load(path, allow_pickle=False)
  except (OSError, EOFError) as e:
    raise InputError(f"{what} {path!r}: cannot read: {e.strerror or e}") from None
  except (ValueError, zipfile.BadZipFile) as e:
    raise InputError(f"{what} {path!r}: not an .npz archive ({str(e).splitlines()[0]})") from None
  if not isinstance(z, np.lib.npyio.NpzFile):
    raise InputError(f"{what} {path!r}: a single .npy array; need an .npz archive with arrays "
                     f"{', '.join(names)} (np.savez)")
  with z:
    missing = [n for n in names if n not in z.files]
    if missing:
      listed = " and ".join([", ".join(list(names)[:-1]), list(names)[-1]] if len(names) > 1
                            else list(names))
      raise InputError(f"{what} {path!r}: needs arrays named {listed}, found "
                       f"{sorted(z.files) or 'none'}")
    out = {}
    for n, nd in names.items():
      try:
        a = z[n]
      except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise InputError(f"{what} {path!r}: cannot read array {n} "
                         f"({str(e).splitlines()[0]})") from None
      out[n] = _check(np.asarray(a), f"{what} {path!r} array", n, nd, "f")
  return out
