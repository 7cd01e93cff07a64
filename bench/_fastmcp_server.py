"""FastMCP's server for bench_http.py, run by the virtual environment bench_http.py creates for it.

``python bench/_fastmcp_server.py PORT PUBLIC_KEY_FILE``: FastMCP 4.1.6 with its ``JWTVerifier``
checking the same RS256 tokens (issuer, audience, static key), stateless JSON responses,
and the same ``echo`` tool. It imports nothing from bastion.
"""

from __future__ import annotations

import sys

import uvicorn
from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier

RESOURCE = "http://127.0.0.1/mcp"
ISSUER = "https://issuer.bench"

if __name__ == "__main__":
    port, key_file = int(sys.argv[1]), sys.argv[2]
    with open(key_file) as f:
        verifier = JWTVerifier(public_key=f.read(), issuer=ISSUER, audience=RESOURCE, algorithm="RS256")
    server = FastMCP("bench", auth=verifier)

    def echo(text: str) -> str:
        return text

    server.tool(echo)

    app = server.http_app(path="/mcp", stateless_http=True, json_response=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
