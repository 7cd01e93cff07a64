"""DPoP for MCP clients (RFC 9449 and the MCP DPoP profile): tokens bound to a key the client holds.

- :class:`ProofKey`: the client's key pair, which signs the proofs; keep it as long as the tokens.
- :class:`DPoPAuth`: an ``httpx2.Auth`` that wraps the SDK's ``OAuthClientProvider`` (or signs
  the requests of a client that sets its own ``Authorization``) and makes its token requests and
  calls DPoP requests.

Example::

    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from bastion.client import DPoPAuth, ProofKey

    auth = DPoPAuth(ProofKey.generate(), oauth_provider)  # the SDK's OAuthClientProvider
    async with (
        httpx2.AsyncClient(auth=auth) as http,
        Client(streamable_http_client("https://mcp.example.com/mcp", http_client=http)) as client,
    ):
        await client.call_tool("whoami", {})
"""

from bastion._jose.proof_key import ProofKey
from bastion.client._auth import DPoPAuth

__all__ = ["DPoPAuth", "ProofKey"]
