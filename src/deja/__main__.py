"""``python -m deja``: the ``deja`` command (:func:`deja.cli.main`), for an environment
whose scripts directory is not on ``PATH``."""

from __future__ import annotations

import sys

from deja.cli import main

if __name__ == "__main__":
    sys.exit(main())
