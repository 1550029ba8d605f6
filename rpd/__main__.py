"""``python -m rpd``: the same as the ``rpd`` console script."""
import sys

from rpd.cli import main

if __name__ == "__main__":
  sys.exit(main())
