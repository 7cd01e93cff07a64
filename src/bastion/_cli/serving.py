"""Serving until Ctrl-C or SIGTERM, which stop the server cleanly: no traceback, exit status 0.

uvicorn re-raises the signal that stopped it once it has shut down, so that a program
embedding it dies of that signal; at a terminal that is a ``KeyboardInterrupt``
traceback after Ctrl-C. The command's servers keep the signal instead, and the command
says ``bastion demo: stopped`` and exits with 0: a server asked to stop, which stops,
has done what it was run for. (A command interrupted before it is done exits with 130.)
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from uvicorn.supervisors import Multiprocess

__all__ = ["STOPPING_SIGNALS", "Server", "Supervisor", "configure_logging"]

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def configure_logging() -> None:
    """The command's log lines, in its process and in each worker: ``LEVEL logger: message`` on stderr."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bastion").setLevel(logging.INFO)


class Server(uvicorn.Server):
    """A uvicorn server that stops on SIGINT or SIGTERM without re-raising it; it prints its banner once it listens."""

    def __init__(self, config: uvicorn.Config, banner: str | None = None) -> None:
        super().__init__(config)
        self._banner = banner
        #: The signal that stopped the server, if one did.
        self.stopped_by: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self._banner is not None:
            print(self._banner, flush=True)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.stopped_by is None:
            self.stopped_by = sig
        super().handle_exit(sig, frame)

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        # As uvicorn's, without raising the signal again at the end.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in STOPPING_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Supervisor(Multiprocess):
    """uvicorn's supervisor of worker processes, which remembers whether a signal stopped it.

    It ends its workers with SIGTERM; uvicorn's workers die of it quietly.
    """

    def __init__(self, config: uvicorn.Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        #: Whether SIGINT or SIGTERM stopped it (else its workers could not start).
        self.stopped = False

    def handle_int(self) -> None:
        self.stopped = True
        super().handle_int()

    def handle_term(self) -> None:
        self.stopped = True
        super().handle_term()
