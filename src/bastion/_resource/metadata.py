"""RFC 9728 OAuth 2.0 Protected Resource Metadata.

The document is served at the path-inserted well-known location
(``/.well-known/oauth-protected-resource/mcp`` for a resource at ``/mcp``,
RFC 9728 section 3.1) and at the root location for older clients.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bastion._core.errors import ConfigurationError

__all__ = ["WELL_KNOWN", "ResourceMetadata", "advertised_scopes", "canonical_resource", "metadata_url"]

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def canonical_resource(url: str) -> str:
    """The canonical form of a resource URI (RFC 8707 section 2, MCP authorization).

    Lower-case scheme and host, no fragment, no trailing slash.

    Raises:
        ConfigurationError: the URL is not an absolute http(s) URL, or has a fragment.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(f"resource URL must be an absolute http(s) URL, got {url!r}")
    if parts.fragment or url.endswith("#"):
        raise ConfigurationError(f"resource URL must not have a fragment: {url!r}")
    if parts.username or parts.password:
        raise ConfigurationError("resource URL must not contain credentials")
    netloc = parts.netloc.lower()
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme.lower(), netloc, path, parts.query, ""))


def metadata_url(resource: str) -> str:
    """Where the metadata of ``resource`` lives: the path-inserted well-known URL."""
    parts = urlsplit(resource)
    return urlunsplit((parts.scheme, parts.netloc, WELL_KNOWN + parts.path, parts.query, ""))


def advertised_scopes(scopes: Iterable[str]) -> list[str]:
    """``scopes`` as the metadata advertises them: never ``offline_access`` or wildcards
    (MCP authorization, scope selection)."""
    return [s for s in scopes if s != "offline_access" and "*" not in s]


@dataclass(frozen=True)
class ResourceMetadata:
    """The fields of the metadata document that do not depend on the request."""

    authorization_servers: Sequence[str] = ()
    scopes_supported: Sequence[str] = ()
    resource_name: str | None = None
    resource_documentation: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def document(self, resource: str) -> dict[str, Any]:
        """The JSON document for ``resource`` (already canonical)."""
        doc: dict[str, Any] = {"resource": resource}
        if self.authorization_servers:
            doc["authorization_servers"] = list(self.authorization_servers)
        doc["scopes_supported"] = advertised_scopes(self.scopes_supported)
        doc["bearer_methods_supported"] = ["header"]
        if self.resource_name:
            doc["resource_name"] = self.resource_name
        if self.resource_documentation:
            doc["resource_documentation"] = self.resource_documentation
        doc.update(self.extra)
        return doc
