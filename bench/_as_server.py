"""Servers for bench_authserver.py, one process each.

``python bench/_as_server.py --port P --db PATH [--cimd-ca CAFILE]`` serves the demo
notes MCP server with its own authorization server on ``http://127.0.0.1:P``: the
SQLite store at PATH, the demo users and scopes, every authorization approved as
alice without a page, registration without a rate limit. With ``--cimd-ca`` the
server fetches Client ID Metadata Documents from loopback, trusting that CA.

``python bench/_as_server.py --port P --documents --cert CERT --key KEY`` serves
client metadata documents over https: ``GET /clients/<n>`` answers a public
client's document whose ``client_id`` is that URL, cacheable for an hour.
"""

from __future__ import annotations

import argparse
import secrets
import ssl
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

#: The redirect URI of every client in the bench (a loopback one: any port is accepted).
REDIRECT_URI = "http://127.0.0.1/callback"


def authorization_app(port: int, db: str, cimd_ca: str | None) -> Any:
    """The notes MCP server with its authorization server, as an ASGI app."""
    from bastion._cli.demo import DEMO_SCOPES, DEMO_USERS, demo_users, notes_server
    from bastion.authserver import AuthorizationServer, Registration
    from bastion.authserver._fetch import SafeFetcher
    from bastion.storage import SQLiteStore

    base = f"http://127.0.0.1:{port}"
    fetcher = None
    if cimd_ca is not None:
        fetcher = SafeFetcher(allow_private=True, verify=ssl.create_default_context(cafile=cimd_ca))
    auth = AuthorizationServer(
        issuer=base,
        store=SQLiteStore(db),
        users=demo_users({name: secrets.token_urlsafe(12) for name in DEMO_USERS}),
        scopes=DEMO_SCOPES,
        auto_approve=DEMO_USERS["alice"],
        registration=Registration(rate_limit=0, fetcher=fetcher),
    )
    mcp = notes_server(auth, resource_url=base + "/mcp")
    return mcp.streamable_http_app(stateless_http=True, json_response=True, host="127.0.0.1")


def documents_app(base: str) -> Starlette:
    """Client ID Metadata Documents for ``/clients/<n>``, each naming its own URL."""

    async def document(request: Request) -> Response:
        url = base + request.url.path
        body = {"client_id": url, "client_name": "Bench client", "redirect_uris": [REDIRECT_URI]}
        return JSONResponse(body, headers={"Cache-Control": "max-age=3600"})

    return Starlette(routes=[Route("/clients/{n:int}", document)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db")
    parser.add_argument("--cimd-ca")
    parser.add_argument("--documents", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.documents:
        app: Any = documents_app(f"https://127.0.0.1:{args.port}")
        tls = {"ssl_certfile": args.cert, "ssl_keyfile": args.key}
    else:
        app, tls = authorization_app(args.port, args.db, args.cimd_ca), {}
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, **tls)


if __name__ == "__main__":
    main()
