"""The ``bastion`` command."""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import logging
import socket
import sys
from collections.abc import Sequence
from typing import Any

import uvicorn

__all__ = ["main"]

LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bastion", description="Authentication and authorization for MCP servers.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run the demo notes server, protected, with development tokens")
    demo.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    demo.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    demo.add_argument("--public-url", help="the URL clients use, if not http://HOST:PORT")

    serve = commands.add_parser("serve", help="serve an MCPServer from a module, e.g. notes.server:mcp")
    serve.add_argument("target", help="MODULE:ATTRIBUTE of a bastion.MCPServer")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--path", default="/mcp", help="the MCP endpoint's path (default /mcp)")
    serve.add_argument("--stateless", action="store_true", help="stateless HTTP (no sessions)")
    serve.add_argument("--json", action="store_true", help="JSON responses instead of SSE streams")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bastion`` command."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("bastion").setLevel(logging.INFO)
    if args.command == "demo":
        return _demo(args)
    return _serve(args)


def _demo(args: argparse.Namespace) -> int:
    from bastion._demo import notes_server
    from bastion._jwt import JWTVerifier
    from bastion.testing import KeyPair

    if not _is_loopback(args.host) and not args.public_url:
        print("bastion demo: binding beyond loopback needs --public-url (the URL clients use)", file=sys.stderr)
        return 2
    base = (args.public_url or f"http://{args.host}:{args.port}").rstrip("/")
    resource = base + "/mcp"
    issuer = base + "/demo-issuer"
    keys = KeyPair.generate("RS256")
    verifier = JWTVerifier(public_key=keys.public_key, issuer=issuer, audience=resource)
    mcp = notes_server(verifier, resource_url=resource)
    day = 24 * 3600
    alice = keys.create_token(
        subject="alice", issuer=issuer, audience=resource, scopes=["notes:read", "notes:write"],
        expires_in_seconds=day, additional_claims={"roles": ["admin"]}, client_id="demo-cli",
    )  # fmt: skip
    bob = keys.create_token(
        subject="bob", issuer=issuer, audience=resource, scopes=["notes:read"],
        expires_in_seconds=day, client_id="demo-cli",
    )  # fmt: skip
    app = mcp.streamable_http_app(stateless_http=True, json_response=True, host=args.host)
    server = _AnnouncingServer(
        uvicorn.Config(app, host=args.host, port=args.port, log_level="warning"), _banner(resource, alice, bob)
    )
    server.run()
    return 0 if server.started else 1


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints its banner once it listens."""

    def __init__(self, config: uvicorn.Config, banner: str) -> None:
        super().__init__(config)
        self._banner = banner

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(self._banner, flush=True)


def _banner(resource: str, alice: str, bob: str) -> str:
    call = (
        f"curl -s {resource} -H 'Authorization: Bearer {alice}' \\\n"
        "    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \\\n"
        """    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'"""
    )
    return f"""
bastion demo: a notes MCP server protected by bearer tokens (RS256 JWTs, valid for 24 hours)

  MCP endpoint     {resource}
  metadata         {resource.replace("/mcp", "/.well-known/oauth-protected-resource/mcp")}

  alice (role admin; notes:read notes:write):
    {alice}

  bob (notes:read only: add_note answers 403 insufficient_scope):
    {bob}

Call a tool:
  {call}

Claude Code:
  claude mcp add --transport http notes {resource} --header "Authorization: Bearer <token>"
VS Code (.vscode/mcp.json):
  {{"servers": {{"notes": {{"type": "http", "url": "{resource}",
      "headers": {{"Authorization": "Bearer <token>"}}}}}}}}
MCP Inspector:
  npx @modelcontextprotocol/inspector  (transport Streamable HTTP, URL above,
  header Authorization: Bearer <token>)

The keys live in memory: restarting the demo makes new tokens. Ctrl-C stops it.
"""


def _serve(args: argparse.Namespace) -> int:
    from bastion._server import MCPServer

    module_name, _, attribute = args.target.partition(":")
    try:
        module = importlib.import_module(module_name)
        server: Any = getattr(module, attribute or "mcp")
    except (ImportError, AttributeError) as exc:
        print(f"bastion serve: cannot load {args.target!r}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(server, MCPServer):
        print(f"bastion serve: {args.target!r} is not a bastion.MCPServer", file=sys.stderr)
        return 2
    server.run(
        "http",
        host=args.host,
        port=args.port,
        streamable_http_path=args.path,
        stateless_http=args.stateless,
        json_response=args.json,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
