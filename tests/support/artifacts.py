"""Files the tests keep for people to look at (screenshots of the pages), and where they go.

``$BASTION_ARTIFACTS`` when set, else ``test-artifacts/`` at the repository's root (ignored by git).
The test run's summary names the folder (see ``pytest_terminal_summary`` in ``tests/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["KEPT", "artifacts_dir"]

#: Every file kept during this run, in order.
KEPT: list[Path] = []


def artifacts_dir(kind: str) -> Path:
    """The folder of artifacts of ``kind`` (``screenshots``), created when missing."""
    base = os.environ.get("BASTION_ARTIFACTS")
    root = Path(base) if base else Path(__file__).resolve().parents[2] / "test-artifacts"
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder
