"""The ``kaito-operator`` process: one kreconcile manager hosting Kaito's controllers and webhook."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``kaito-operator``; returns the process exit code."""
    from kaito.operator.main import run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
