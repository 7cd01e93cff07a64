"""All the routes of the authorization server, gathered from the endpoint modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from bastion.authserver._browser import consents_page
from bastion.authserver._endpoints import authorize, introspect, metadata, register, revoke, token

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["build_routes"]


def build_routes(server: AuthorizationServer) -> list[BaseRoute]:
    """Every endpoint's routes; each module contributes its own through ``routes(server)``."""
    routes: list[BaseRoute] = []
    for module in (metadata, authorize, consents_page, token, register, revoke, introspect):
        routes.extend(module.routes(server))
    return routes
