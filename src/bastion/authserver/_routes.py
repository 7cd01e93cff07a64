"""All the routes of the authorization server, gathered from the endpoint modules."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["build_routes"]


def build_routes(server: AuthorizationServer) -> list[BaseRoute]:
    """Every endpoint's routes; each module contributes its own through ``routes(server)``."""
    from bastion.authserver import (
        _authorize,
        _consents_page,
        _discovery,
        _introspect,
        _register,
        _revoke,
        _token,
    )

    routes: list[BaseRoute] = []
    for module in (_discovery, _authorize, _consents_page, _token, _register, _revoke, _introspect):
        routes.extend(module.routes(server))
    return routes
