"""The ``bastion`` command."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bastion`` command; the exit status."""
    # Imported when run, so that ``python -m bastion._cli.main`` finds its module not yet imported.
    from bastion._cli.main import main as run

    return run(argv)
