"""The ``bastion`` command: its parser, and how a command's failure reaches the terminal.

Every command ends as one line on stderr, ``bastion <command>: <message>``, when it cannot go
on: exit status 2 for a usage, configuration or store error (a ``ConfigurationError`` from
anywhere, a bad flag), 1 for a refusal (no such client), 130 when interrupted before it is
done. A server (``demo``, ``serve``) stopped by Ctrl-C or SIGTERM says ``stopped`` and exits with 0.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from bastion._cli import audit, demo_command, serve
from bastion._cli.admin import add_commands
from bastion._cli.errors import USAGE, CommandRefused
from bastion._cli.parser import Parser, command_name
from bastion._cli.serving import configure_logging
from bastion._core.errors import ConfigurationError

__all__ = ["main"]

#: The exit status of a command interrupted (Ctrl-C) before it was done: 128 + SIGINT, as shells report it.
INTERRUPTED = 130


def _version() -> str:
    try:
        return version("mcp-bastion")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parser() -> Parser:
    parser = Parser(prog="bastion", description="Authentication and authorization for MCP servers.")
    parser.add_argument("--version", action="version", version=f"bastion {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo_command.add_parser(commands)
    add_commands(commands)  # clients, grants, consents, keys, encryption-key, token
    serve.add_parser(commands)
    audit.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bastion`` command; the exit status."""
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        return int(args.run(args))
    except CommandRefused as exc:
        print(f"{command_name(args)}: {exc}", file=sys.stderr)
        return exc.status
    except ConfigurationError as exc:
        print(f"{command_name(args)}: {exc}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print(f"{command_name(args)}: interrupted", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    raise SystemExit(main())
