"""The ``bastion`` command's argument parser: every option's help ends with its default."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["Formatter", "Parser", "command_name"]


class Formatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds ``(default: X)`` to an option's help, unless the help says its default itself.

    Nothing is added for a flag (off unless given) or an option without a default: its
    help says what happens without it, as ``(default: BASTION_STORE)`` does.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], "", argparse.SUPPRESS):
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose help shows defaults; its subcommands' parsers are ``Parser`` too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)


def command_name(args: argparse.Namespace) -> str:
    """``bastion clients list``: the command the arguments ran, as its messages name it."""
    action = getattr(args, "action", None)
    return f"bastion {args.command}" + (f" {action}" if action else "")
