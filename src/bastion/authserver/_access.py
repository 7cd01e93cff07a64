"""(being written) Access tokens: RFC 9068 JWTs signed with the key ring, and their verifier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from bastion.authserver._models import User

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["AccessTokenIssuer"]


class AccessTokenIssuer:
    """Mints the server's access tokens."""

    def __init__(self, server: AuthorizationServer) -> None:
        self.server = server

    async def mint(
        self,
        *,
        client_id: str,
        subject: str,
        scopes: Sequence[str],
        resource: str,
        grant_id: str | None,
        user: User | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> tuple[str, int]:
        """A signed access token for ``resource`` and its lifetime in seconds (``expires_in``)."""
        raise NotImplementedError
