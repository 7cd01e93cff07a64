"""``bastion demo --dev-metadata-origin URL --dev-ca-file PATH``: client metadata documents served locally.

A client developer serves its Client ID Metadata Document over https on loopback
(``https://localhost:3000/client-metadata.json``, a certificate from a local CA) and
uses that URL as its ``client_id``; these flags let the demo's authorization server
fetch it (``Registration.development_metadata_origins``, docs/cimd-development.md).
"""

from __future__ import annotations

import argparse

from bastion.authserver import Registration

__all__ = ["add_arguments", "refusal", "registration"]


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The flags of ``bastion demo`` for development client metadata documents."""
    demo.add_argument(
        "--dev-metadata-origin",
        metavar="URL",
        action="append",
        default=[],
        help="fetch client metadata documents from this loopback https origin too, e.g. https://localhost:3000 "
        "(repeatable; development only, the server must be on loopback)",
    )
    demo.add_argument(
        "--dev-ca-file",
        metavar="PATH",
        help="the CA (PEM) that issued the certificates of the --dev-metadata-origin servers; only it is trusted "
        "for them (default: none)",
    )


def refusal(args: argparse.Namespace, from_environment: bool) -> str | None:
    """Why these flags cannot be used as given, or ``None``."""
    if not args.dev_metadata_origin and not args.dev_ca_file:
        return None
    if from_environment:
        return "--dev-metadata-origin applies to the demo's own authorization server, and BASTION_AUTH replaces it"
    if not args.dev_ca_file:
        return "--dev-metadata-origin needs --dev-ca-file, the CA that issued the origin's certificate"
    if not args.dev_metadata_origin:
        return "--dev-ca-file is used only with --dev-metadata-origin"
    return None


def registration(args: argparse.Namespace) -> Registration | None:
    """The demo server's registration settings with the development origins, or ``None`` without the flags.

    Raises:
        ConfigurationError: an origin or the CA file is wrong.
    """
    if not args.dev_metadata_origin and not args.dev_ca_file:
        return None
    return Registration(development_metadata_origins=args.dev_metadata_origin, development_ca_file=args.dev_ca_file)
