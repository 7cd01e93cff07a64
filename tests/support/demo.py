"""``bastion demo`` run as a user runs it: a process of its own, signing every authorization in as alice."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["demo_process", "free_port"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def demo_process(store: str, *options: str) -> Iterator[str]:
    """``bastion demo`` on ``store`` with ``--auto-approve alice``; its MCP endpoint once it listens."""
    port = free_port()
    argv = ["demo", "--port", str(port), "--store", store, "--auto-approve", "alice", *options]
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion._cli.main", *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops it" in line:
                break
        found = re.search(r"MCP endpoint\s+(\S+)", "".join(lines))
        assert found is not None, "".join(lines)
        yield found.group(1)
    finally:
        process.terminate()
        process.wait(timeout=20)
        process.stdout.close()
