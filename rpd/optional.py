"""Optional dependencies: a missing one is one line naming the pip extra that installs it.

``rpd`` runs on its declared dependencies (``pip install -e .``). A few features need more:
scikit-learn for the bundled data sets (``logistic:breast_cancer``, ``mlp``: the digits), and
the solvers of the exact step of ``zb-auto`` come with scipy (declared). :data:`EXTRAS` maps
each optional top-level module to its PyPI name and the extra of ``pyproject.toml`` that
brings it; :func:`require` imports a module or raises :class:`MissingDependency` (an
:class:`~rpd.errors.InputError`: one line, exit code 2, no traceback), and :func:`hint` turns
any :class:`ModuleNotFoundError` the CLI catches into the same one line.
"""
from __future__ import annotations

import importlib

from rpd.errors import InputError

#: optional top-level module -> (PyPI distribution, extra of ``rpd`` that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "sklearn": ("scikit-learn", "data"),
    "pytest": ("pytest", "dev"),
    "hypothesis": ("hypothesis", "dev"),
}


class MissingDependency(InputError):
  """An optional (or broken core) dependency is not installed; the message says how to get it."""


def message(module: str, what: str) -> str:
  """The one line for a missing ``module`` needed by ``what``."""
  root = module.split(".")[0]
  if root in EXTRAS:
    dist, extra = EXTRAS[root]
    return (f"{what} needs {dist} (module {root!r}), which is not installed: "
            f"pip install 'rpd[{extra}]' (or pip install {dist})")
  return (f"{what} needs the Python module {root!r}, which is not installed (a dependency of "
          f"rpd: reinstall with pip install -e .)")


def require(module: str, what: str):
  """Import and return ``module``, or raise :class:`MissingDependency` naming its extra.

  Args:
    module: dotted module name, e.g. ``"sklearn.datasets"``.
    what: the feature that needs it, for the message (e.g. ``"--problem mlp"``).
  """
  try:
    return importlib.import_module(module)
  except ImportError as e:
    missing = getattr(e, "name", None) or module
    raise MissingDependency(message(missing, what)) from None


def hint(error: ModuleNotFoundError, what: str) -> str:
  """The one line for a :class:`ModuleNotFoundError` raised while running ``what``."""
  return message(error.name or str(error), what)
