"""``bastion.protect``: any ASGI app as a protected resource."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from starlette.types import ASGIApp

from bastion._resource.dpop import DPoPOptions, dpop_options
from bastion._resource.guard import ResourceGuard
from bastion._resource.metadata import ResourceMetadata
from bastion._resource.middleware import DEFAULT_MAX_BODY_SIZE, AuthMiddleware
from bastion._resource.policy import PolicyLike, as_policy, require_auth
from bastion._resource.registry import PolicyRegistry
from bastion._resource.verifier import Verifier

__all__ = ["protect"]


def protect(
    app: ASGIApp,
    *,
    auth: Verifier,
    resource_url: str | None = None,
    mcp_path: str | None = None,
    policy: PolicyLike = require_auth,
    registry: PolicyRegistry | None = None,
    authorization_servers: Sequence[str] = (),
    scopes_supported: Sequence[str] = (),
    initial_scopes: Sequence[str] | None = None,
    is_protected: Callable[[str], bool] | None = None,
    max_body_size: int = DEFAULT_MAX_BODY_SIZE,
    dpop: DPoPOptions | bool = True,
) -> AuthMiddleware:
    """Wrap an ASGI app so that every HTTP request needs a valid bearer token.

    The app also serves its RFC 9728 metadata. Give ``mcp_path`` when the app is
    an MCP endpoint, so per-tool policies from ``registry`` are enforced with a
    real HTTP 403 step-up.

    Args:
        app: The app to protect.
        auth: The verifier.
        resource_url: The canonical URL of the resource (derived per request when omitted).
        mcp_path: The MCP endpoint's path inside ``app``, if it has one.
        policy: The policy every protected request must satisfy.
        registry: Per-tool, per-resource and per-prompt policies.
        authorization_servers: Issuers for the metadata (default: the verifier's).
        scopes_supported: Scopes for the metadata (default: those the policies use).
        initial_scopes: Scopes the 401 challenge names for a first sign-in, besides what
            ``policy`` and the verifier require (default: when nothing is required, the
            scopes the policies use).
        is_protected: Which paths need a token (default: all but the metadata).
        max_body_size: The largest JSON-RPC body inspected (413 past it).
        dpop: DPoP-bound tokens (RFC 9449): on by default, :class:`~bastion.DPoPOptions`
            to require or tune it (give it a shared ``store`` with replicas), ``False`` off.
    """
    guard = ResourceGuard(
        auth,
        resource_url=resource_url,
        resource_path=mcp_path or "",
        metadata=ResourceMetadata(
            authorization_servers=tuple(authorization_servers), scopes_supported=tuple(scopes_supported)
        ),
        registry=registry or PolicyRegistry(policy),
        initial_scopes=initial_scopes,
        dpop=dpop_options(dpop),
    )
    return AuthMiddleware(
        app,
        guard,
        mcp_path=mcp_path,
        is_protected=is_protected,
        max_body_size=max_body_size,
        request_policy=as_policy(policy),
    )
