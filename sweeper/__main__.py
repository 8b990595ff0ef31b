"""``python -m sweeper`` is the same as the ``sweeper`` command."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from sweeper.cli import main

    sys.exit(main())
