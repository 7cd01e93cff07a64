"""The issuer identifier, and where a server keeps its state when no store is given."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from bastion._core.errors import ConfigurationError
from bastion._core.net import is_loopback_host
from bastion.storage import SQLiteStore, Store, open_store

__all__ = ["canonical_issuer", "default_store", "default_store_path", "store_name"]


def canonical_issuer(issuer: str) -> str:
    """The issuer identifier as published (RFC 8414 section 2).

    An https URL (http only for loopback hosts) without query or fragment. A root
    issuer is written with its trailing slash (``https://a.example/``): that is how
    URL parsers, including the SDK's and browsers', render it, so every client that
    compares ``iss`` as a string sees the same value.

    Raises:
        ConfigurationError: the issuer is not such a URL.
    """
    parts = urlsplit(issuer)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"issuer must be an absolute https URL, got {issuer!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError("issuer must use https (http is allowed only for a loopback host)")
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise ConfigurationError("issuer must not have a query or a fragment")
    if parts.username or parts.password:
        raise ConfigurationError("issuer must not contain credentials")
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc.lower()}{path or '/'}"


def store_name(issuer: str) -> str:
    """A file name for the issuer's default store (host, port and path, made safe)."""
    parts = urlsplit(issuer)
    text = f"{parts.netloc}{parts.path}".strip("/")
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text)[:100] or "bastion"


def default_store(issuer: str | None) -> Store:
    """The store of a server given none: ``BASTION_STORE`` when set, else a SQLite file of its own.

    One file per issuer, so two servers on one machine never share clients or keys.
    """
    url = os.environ.get("BASTION_STORE")
    if url:
        try:
            return open_store(url)
        except ConfigurationError as exc:
            raise ConfigurationError(f"BASTION_STORE: {exc}") from None
    return SQLiteStore(default_store_path(store_name(issuer) if issuer else "bastion"))


def default_store_path(name: str = "bastion") -> str:
    """The SQLite file used when no store is given: under the user's data directory."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "bastion" / f"{name}.db")
