"""The Prometheus scrape endpoint of an MCP server (``MCPServer.serve_metrics``).

It serves bastion's own Prometheus registry (``bastion.instrument(prometheus=True)``,
which it turns on when bastion is not instrumented yet), or a registry the
application gives, which its own ``PrometheusMetricReader`` writes to. The endpoint
is never behind the MCP authentication: scrapers do not carry tokens. It must be
reachable only from inside the deployment (docs/operations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from bastion._core import telemetry
from bastion._core.errors import ConfigurationError
from bastion._core.prometheus import render
from bastion.authserver._server import AuthorizationServer
from bastion.storage import ObservedStore

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["metrics_endpoint"]

logger = logging.getLogger("bastion")


def metrics_endpoint(
    registry: CollectorRegistry | None, authorization_server: AuthorizationServer | None
) -> Callable[[Request], Awaitable[Response]]:
    """The endpoint answering a scrape of ``registry``, or of bastion's own Prometheus registry.

    Raises:
        ConfigurationError: bastion records to a meter provider of the application's
            and no ``registry`` is given; or the Prometheus extra is not installed.
    """
    if registry is None:
        observer = telemetry.active
        if observer is None:
            telemetry.instrument(prometheus=True)
            if authorization_server is not None and not isinstance(authorization_server.store, ObservedStore):
                logger.warning(
                    "the authorization server's store is not timed: call bastion.instrument(prometheus=True) "
                    "before building it to have bastion.store.duration too"
                )
        elif observer.exposition is None:
            raise ConfigurationError(
                "bastion records to a meter provider of your own: give it a PrometheusMetricReader "
                "and pass that reader's registry to serve_metrics(registry=...)"
            )

    async def metrics(request: Request) -> Response:
        accept = request.headers.get("accept", "")
        if registry is not None:
            body, content_type = render(registry, accept)
        else:
            observer = telemetry.active
            if observer is None or observer.exposition is None:
                return Response("metrics are off\n", status_code=404, media_type="text/plain")
            body, content_type = observer.exposition.render(accept)
        return Response(body, headers={"Content-Type": content_type, "Cache-Control": "no-store"})

    return metrics
