"""(being written)"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer


def routes(server: AuthorizationServer) -> list[BaseRoute]:
    """The routes of this endpoint."""
    return []
