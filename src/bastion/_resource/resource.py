"""A protected resource: where it is, what it advertises (RFC 9728), and what its challenges ask for.

:class:`ProtectedResource` holds a resource's configuration and answers what does not
depend on a decision: its canonical URL (configured, or pinned from the first request),
the URL a DPoP proof names, the metadata document and its paths, and the scopes a 401 or
a 403 challenge names. :class:`~bastion._resource.guard.ResourceGuard` adds the decisions.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, Response
from starlette.types import Scope

from bastion._core.audit import Audit
from bastion._core.errors import ConfigurationError
from bastion._core.log import ThrottledLog
from bastion._resource.challenge import Scheme
from bastion._resource.dpop import DPoPOptions, ResourceProofs
from bastion._resource.metadata import WELL_KNOWN, ResourceMetadata, advertised_scopes, canonical_resource, metadata_url
from bastion._resource.registry import PolicyRegistry
from bastion._resource.verifier import Verifier

__all__ = ["ProtectedResource", "route_path", "step_up_scopes"]

logger = logging.getLogger("bastion")


def route_path(scope: Scope) -> str:
    """The request path relative to where the app is mounted (``root_path`` removed)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def step_up_scopes(needed: Iterable[str], granted: Iterable[str], known: Iterable[str]) -> list[str]:
    """The scopes of a 403 ``insufficient_scope`` challenge, sorted.

    MCP 2025-11-25 "Scope Challenge Handling", the recommended approach: the token's
    scopes that the server knows, plus every scope the operation needs, so that a client
    which replaces its scopes with the challenge's (rather than adding them) keeps what
    it could already do.
    """
    known_set = frozenset(known)
    return sorted({*needed, *(scope for scope in granted if scope in known_set)})


class ProtectedResource:
    """One protected resource's configuration, and what follows from it alone.

    Args:
        verifier: Checks the request's credentials.
        resource_url: The canonical URL of the resource. When ``None`` it is derived
            from each request (development only; a warning is logged once).
        resource_path: The path of the resource on this server (``/mcp``), used when
            ``resource_url`` is derived.
        metadata: The static fields of the RFC 9728 document.
        registry: The policies; ``scopes_supported`` is computed from them unless
            the metadata gives it.
        initial_scopes: The scopes a first sign-in should ask for, named by the 401
            challenge besides what the default policy and the verifier require
            (default: when nothing is required, every scope the policies use).
        dpop: How DPoP-bound tokens are checked (RFC 9449); ``None`` accepts bearer tokens
            only (and refuses every bound token, which it cannot check).

    """

    def __init__(
        self,
        verifier: Verifier,
        *,
        resource_url: str | None = None,
        resource_path: str = "",
        metadata: ResourceMetadata | None = None,
        registry: PolicyRegistry | None = None,
        initial_scopes: Sequence[str] | None = None,
        dpop: DPoPOptions | None = None,
    ) -> None:
        self.verifier = verifier
        self.registry = registry or PolicyRegistry()
        self.resource_path = resource_path.rstrip("/")
        self.resource_url = canonical_resource(resource_url) if resource_url else None
        if self.resource_url is not None:
            verifier.expect_audience(self.resource_url)
        self.metadata = metadata or ResourceMetadata()
        self.initial_scopes = None if initial_scopes is None else _initial_scopes(initial_scopes)
        #: The checks of DPoP proofs, or ``None`` when DPoP is off.
        self.dpop = ResourceProofs(dpop) if dpop is not None else None
        self._dpop_only = dpop is not None and dpop.required
        #: The schemes the 401 challenges offer, in this order.
        self.schemes: tuple[Scheme, ...] = ("Bearer",)
        if dpop is not None:
            self.schemes = ("DPoP",) if dpop.required else ("Bearer", "DPoP")
        self._outages = ThrottledLog(logger)
        #: Where the guard reports refusals (``call.refused``).
        self.audit = Audit()

    def resource_for(self, conn: HTTPConnection) -> str:
        """The canonical resource URL: configured, or derived from the first request.

        A derived URL is pinned (and handed to the verifier as its expected audience when
        it has none), so a later request cannot change it with another ``Host`` header.
        """
        if self.resource_url is not None:
            return self.resource_url
        root = conn.scope.get("root_path", "")
        try:
            derived = canonical_resource(f"{conn.url.scheme}://{conn.url.netloc}{root}{self.resource_path}")
        except ValueError:
            # An unusable Host header: answer this request, derive from a later one.
            return f"{conn.url.scheme}://localhost{self.resource_path}"
        logger.warning(
            "resource_url is not set: using %s, derived from the first request. "
            "Set resource_url (or BASTION_RESOURCE_URL) in production.",
            derived,
        )
        self.resource_url = derived
        self.verifier.expect_audience(derived)
        return derived

    def endpoint_url(self, conn: HTTPConnection) -> str:
        """The public URL of the endpoint a request went to, without query: what a DPoP proof's ``htu`` names.

        Built from the resource URL, never from the request's ``Host`` header: the resource's
        origin, the part of its path where this app is mounted, and the request's path in the app.
        """
        parts = urlsplit(self.resource_for(conn))
        mount = parts.path
        mounted = self.resource_path
        mount = mount[: len(mount) - len(mounted)] if mounted and mount.endswith(mounted) else ""
        return f"{parts.scheme}://{parts.netloc}{mount}{route_path(conn.scope)}"

    def metadata_url_for(self, conn: HTTPConnection) -> str:
        """The ``resource_metadata`` URL for challenges."""
        return metadata_url(self.resource_for(conn))

    def metadata_paths(self) -> tuple[str, ...]:
        """The paths (relative to the app) where the metadata document is served."""
        path = self.resource_path
        if self.resource_url is not None:
            path = urlsplit(self.resource_url).path
        return (WELL_KNOWN + path, WELL_KNOWN) if path else (WELL_KNOWN,)

    def scopes_supported(self) -> Sequence[str]:
        """The scopes advertised in the metadata document."""
        return self.metadata.scopes_supported or tuple(self.verifier.scopes_supported) or self.registry.scopes()

    def challenge_scopes(self) -> list[str]:
        """The ``scope`` of a 401 challenge: what a client should request first.

        Clients use it before ``scopes_supported`` (MCP "Scope Selection Strategy"), so it
        decides whether a first sign-in is least-privilege: what the default policy and the
        verifier require, plus ``initial_scopes``; with neither, every scope the policies
        use. Never ``offline_access``: clients add it when the authorization server offers it.
        """
        wanted = {*self.registry.default.scopes(), *self.verifier.required_scopes}
        if self.initial_scopes is not None:
            wanted.update(self.initial_scopes)
        elif not wanted:
            wanted.update(self.registry.scopes())
        wanted.discard("offline_access")
        return sorted(wanted)

    def known_scopes(self) -> frozenset[str]:
        """The scopes this server knows: those it advertises, and those of its scope hierarchy."""
        return frozenset(advertised_scopes(self.scopes_supported())) | self.registry.hierarchy.scopes()

    def step_up_scopes(self, needed: Iterable[str], granted: Iterable[str]) -> list[str]:
        """The ``scope`` of a 403 challenge: the known ones of ``granted``, and ``needed``."""
        return step_up_scopes(needed, granted, self.known_scopes())

    def metadata_document(self, conn: HTTPConnection) -> dict[str, Any]:
        """The RFC 9728 document for this resource."""
        resource = self.resource_for(conn)
        doc_meta = self.metadata
        if not doc_meta.scopes_supported:
            doc_meta = replace(doc_meta, scopes_supported=self.scopes_supported())
        if not doc_meta.authorization_servers and self.verifier.issuers:
            # Read at each request: an authorization server's issuer may be known only once it serves.
            doc_meta = replace(doc_meta, authorization_servers=list(self.verifier.issuers))
        document = doc_meta.document(resource)
        if self.dpop is not None:
            # RFC 9728 section 2.
            document["dpop_signing_alg_values_supported"] = list(self.dpop.algorithms)
            document["dpop_bound_access_tokens_required"] = self._dpop_only
        return document

    def metadata_response(self, conn: HTTPConnection) -> Response:
        """The metadata document as an HTTP response, readable cross-origin."""
        return JSONResponse(
            self.metadata_document(conn),
            headers={"Access-Control-Allow-Origin": "*", "Cache-Control": "public, max-age=3600"},
        )


def _initial_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    if isinstance(scopes, str) or not all(isinstance(s, str) and s and not any(c.isspace() for c in s) for s in scopes):
        raise ConfigurationError("initial_scopes must be a list of scope names without spaces")
    if "offline_access" in scopes:
        # Clients ask for it themselves when the authorization server offers refresh tokens.
        raise ConfigurationError("initial_scopes must not name offline_access: clients add it themselves")
    return tuple(dict.fromkeys(scopes))
