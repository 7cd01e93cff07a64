"""The ``bastion`` command."""

from bastion._cli.main import main

__all__ = ["main"]
