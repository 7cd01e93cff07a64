"""An authorization server with an MCP endpoint in a process of its own, for a test that kills it.

    cd tests && python -m support.restart_server serve <SQLite file> <port> <clock offset in seconds>
    cd tests && python -m support.restart_server seed <SQLite file> <port> <sessions>

``serve`` runs uvicorn on 127.0.0.1 until it is killed; the server and its store read the
real time plus the offset, so a restarted server can run later than the first one did.
``seed`` signs ``sessions`` users in to the public client through the server's own Python
API on the same file (one grant and one refresh token each), then prints the subjects and
refresh tokens as one JSON object.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import uvicorn

from bastion import MCPServer
from bastion._cli.demo import notes_server
from bastion.authserver import AuthorizationServer, User
from bastion.authserver._grants.refresh_token import RefreshTokens
from bastion.storage import SQLiteStore

from support.authserver import PUBLIC_CLIENT, SCOPES


def offset_clock(offset: float) -> Callable[[], float]:
    """The real time, ``offset`` seconds ahead."""
    return lambda: time.time() + offset


def authorization_server(db: Path, port: int, offset: float) -> AuthorizationServer:
    """The authorization server of ``http://127.0.0.1:<port>``, on the SQLite file ``db``."""
    clock = offset_clock(offset)
    base = f"http://127.0.0.1:{port}"
    return AuthorizationServer(
        base, store=SQLiteStore(db, clock=clock), scopes=SCOPES, clients=[PUBLIC_CLIENT], clock=clock
    )


def app(db: Path, port: int, offset: float) -> MCPServer:
    """The demo notes server (``whoami`` for anyone signed in) behind that authorization server."""
    return notes_server(authorization_server(db, port, offset), resource_url=f"http://127.0.0.1:{port}/mcp")


async def seed(db: Path, port: int, sessions: int) -> dict[str, str]:
    """``sessions`` users signed in to the public client: subject -> refresh token."""
    server = authorization_server(db, port, 0.0)
    issued = await sign_in(server, f"http://127.0.0.1:{port}/mcp", sessions)
    await server.store.aclose()
    return issued


async def sign_in(server: AuthorizationServer, resource: str, sessions: int) -> dict[str, str]:
    """``sessions`` users signed in to the public client for ``resource``: subject -> refresh token.

    One grant and one refresh token each, through the server's Python API.
    """
    server.add_resource(resource)
    # The signing key exists before the first refreshes race.
    await server.access_tokens.mint(
        client_id=PUBLIC_CLIENT.client_id, subject="seed", scopes=(), resource=resource, grant_id=None
    )
    refresh_tokens = RefreshTokens(server)
    issued: dict[str, str] = {}
    for number in range(sessions):
        user = User(f"user-{number:04}", name=f"User {number}")
        grant_id = await server.new_grant(user, PUBLIC_CLIENT.client_id)
        issued[user.subject] = await refresh_tokens.issue(
            client_id=PUBLIC_CLIENT.client_id,
            user=user,
            scopes=("notes:read",),
            resources=(resource,),
            grant_id=grant_id,
        )
    return issued


def main(argv: list[str]) -> None:
    command, db, port = argv[0], Path(argv[1]), int(argv[2])
    if command == "seed":
        print(json.dumps(asyncio.run(seed(db, port, int(argv[3])))))
        return
    mcp = app(db, port, float(argv[3]))
    starlette = mcp.streamable_http_app(stateless_http=True, json_response=True)
    uvicorn.run(starlette, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
