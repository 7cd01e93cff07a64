"""How a command of ``bastion`` stops short: one line on stderr and an exit status."""

from __future__ import annotations

from bastion._core.errors import BastionError

__all__ = ["USAGE", "CommandRefused"]

#: The exit status of a usage, configuration or store error.
USAGE = 2


class CommandRefused(BastionError):
    """A command that cannot go on: ``bastion <command>: <message>`` is printed, and ``status`` is the exit status."""

    def __init__(self, message: str, status: int = USAGE) -> None:
        super().__init__(message)
        self.status = status
