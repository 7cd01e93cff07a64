"""One server for bench_http.py: ``python bench/_http_server.py MODE PORT [PUBLIC_KEY_FILE]``.

MODE is ``plain`` (the SDK's own MCPServer, no auth), ``off`` (bastion's MCPServer,
no auth) or ``jwt`` (bastion's MCPServer verifying RS256 JWTs with a static key).
"""

from __future__ import annotations

import sys
from typing import Any

import uvicorn

RESOURCE = "http://127.0.0.1/mcp"
ISSUER = "https://issuer.bench"


def build(mode: str, key_file: str | None) -> Any:
    if mode == "plain":
        from mcp.server.mcpserver import MCPServer as SDKServer

        server: Any = SDKServer("bench", log_level="WARNING")
    else:
        from bastion import JWTVerifier, MCPServer

        auth = None
        if mode == "jwt":
            assert key_file is not None
            with open(key_file) as f:
                auth = JWTVerifier(public_key=f.read(), issuer=ISSUER, audience=RESOURCE)
        server = MCPServer("bench", auth=auth, resource_url=RESOURCE, log_level="WARNING")

    def echo(text: str) -> str:
        return text

    server.add_tool(echo)

    return server.streamable_http_app(stateless_http=True, json_response=True)


if __name__ == "__main__":
    mode, port = sys.argv[1], int(sys.argv[2])
    app = build(mode, sys.argv[3] if len(sys.argv) > 3 else None)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
