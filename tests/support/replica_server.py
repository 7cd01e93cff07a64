"""One replica of a deployment on Redis: an authorization server with an MCP endpoint, in a process of its own.

    cd tests && python -m support.replica_server serve <Redis URL> <port> <public URL>
    cd tests && python -m support.replica_server seed <Redis URL> <public URL> <sessions>

``serve`` runs uvicorn on ``127.0.0.1:<port>`` until it is killed: the demo notes server
(``whoami`` for anyone signed in) behind an :class:`AuthorizationServer` on
``RedisStore(<Redis URL>)``, with the test users (``check_user``), scopes and public client.
The issuer is ``<public URL>`` and the resource ``<public URL>/mcp``, whatever port the
replica listens on: every replica of a deployment is given the same public URL, as behind
a load balancer, and none takes anything from a request's Host header.

``seed`` signs ``sessions`` users in to the public client through the server's own Python
API on the same Redis (one grant and one refresh token each), then prints the subjects and
refresh tokens as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys

import uvicorn

from bastion import MCPServer
from bastion._cli.demo import notes_server
from bastion.authserver import AuthorizationServer
from bastion.storage import RedisStore

from support.authserver import PUBLIC_CLIENT, SCOPES, check_user
from support.restart_server import sign_in


def authorization_server(redis_url: str, public: str) -> AuthorizationServer:
    """The authorization server of the deployment at ``public``, on the Redis of ``redis_url``."""
    return AuthorizationServer(
        public, store=RedisStore(redis_url), users=check_user, scopes=SCOPES, clients=[PUBLIC_CLIENT]
    )


def app(redis_url: str, public: str) -> MCPServer:
    """The demo notes server at ``<public>/mcp`` behind that authorization server."""
    return notes_server(authorization_server(redis_url, public), resource_url=public + "/mcp")


async def seed(redis_url: str, public: str, sessions: int) -> dict[str, str]:
    """``sessions`` users signed in to the public client: subject -> refresh token."""
    server = authorization_server(redis_url, public)
    issued = await sign_in(server, public + "/mcp", sessions)
    await server.store.aclose()
    return issued


def main(argv: list[str]) -> None:
    command, redis_url = argv[0], argv[1]
    if command == "seed":
        print(json.dumps(asyncio.run(seed(redis_url, argv[2], int(argv[3])))))
        return
    port, public = int(argv[2]), argv[3]
    starlette = app(redis_url, public).streamable_http_app(stateless_http=True, json_response=True)
    # Idle connections are kept a minute: longer than any client under test keeps one.
    uvicorn.run(starlette, host="127.0.0.1", port=port, log_level="warning", timeout_keep_alive=60)


if __name__ == "__main__":
    main(sys.argv[1:])
