"""Servers for bench_authserver.py, one process each.

``python bench/_as_server.py --port P --db PATH [--cimd-ca CAFILE]`` serves the demo
notes MCP server with its own authorization server on ``http://127.0.0.1:P``: the
SQLite store at PATH, the demo users and scopes, every authorization approved as
alice without a page, registration without a rate limit. With ``--cimd-ca`` the
server fetches Client ID Metadata Documents from loopback, trusting that CA.
``--store URL`` names another store instead (``redis://127.0.0.1:6379/0``), and
``--public-url URL`` the issuer and the MCP server's URL (default
``http://127.0.0.1:P``): replicas sharing one store are given the same one.

``python bench/_as_server.py --port P --documents --cert CERT --key KEY`` serves
client metadata documents over https: ``GET /clients/<n>`` answers a public
client's document whose ``client_id`` is that URL, cacheable for an hour.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import ssl
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion.storage import SQLiteStore, Store, open_store

#: The redirect URI of every client in the bench (a loopback one: any port is accepted).
REDIRECT_URI = "http://127.0.0.1/callback"


def authorization_app(base: str, store: Store, cimd_ca: str | None) -> Any:
    """The notes MCP server with its authorization server at ``base``, as an ASGI app."""
    from bastion._cli.demo import DEMO_SCOPES, DEMO_USERS, demo_users, notes_server
    from bastion.authserver import AuthorizationServer, Registration
    from bastion.authserver._fetch import SafeFetcher

    fetcher = None
    if cimd_ca is not None:
        fetcher = SafeFetcher(allow_private=True, verify=ssl.create_default_context(cafile=cimd_ca))
    auth = AuthorizationServer(
        issuer=base,
        store=store,
        users=demo_users({name: secrets.token_urlsafe(12) for name in DEMO_USERS}),
        scopes=DEMO_SCOPES,
        auto_approve=DEMO_USERS["alice"],
        registration=Registration(rate_limit=0, fetcher=fetcher),
    )
    mcp = notes_server(auth, resource_url=base + "/mcp")
    # The stateless transport logs every request it ends; the bench's MCP requests would flood the output.
    logging.getLogger("mcp.server.streamable_http").setLevel(logging.WARNING)
    # Each audit event as one JSON line through a plain handler, as a deployment writes them; through
    # the SDK's Rich console handler (its default logging) the same lines cost about two thirds of
    # the flows' throughput here (docs/benchmarks.md).
    audit = logging.getLogger("bastion.audit")
    audit.propagate = False
    audit.addHandler(logging.StreamHandler(open(os.devnull, "w")))  # noqa: SIM115 - open while serving
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
    parser.add_argument("--store")
    parser.add_argument("--public-url")
    parser.add_argument("--cimd-ca")
    parser.add_argument("--documents", action="store_true")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    args = parser.parse_args()
    if args.documents:
        app: Any = documents_app(f"https://127.0.0.1:{args.port}")
        tls = {"ssl_certfile": args.cert, "ssl_keyfile": args.key}
    else:
        store = SQLiteStore(args.db) if args.store is None else open_store(args.store)
        base = args.public_url or f"http://127.0.0.1:{args.port}"
        app, tls = authorization_app(base, store, args.cimd_ca), {}
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False, **tls)


if __name__ == "__main__":
    main()
