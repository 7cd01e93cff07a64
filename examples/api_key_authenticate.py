"""Your own check of your own header: an X-API-Key looked up in your key store.

    python examples/api_key_authenticate.py
    curl -s http://127.0.0.1:8000/mcp -H 'X-API-Key: demo-key-for-alice' ...

The callable returns a principal (an AccessToken, or a dict with subject, scopes, roles)
or None when the request carries no key; it may be sync or async.
"""

import hashlib
import hmac

from starlette.requests import Request

from bastion import CallableVerifier, InvalidToken, MCPServer, get_access_token, require_scopes

# Keep only hashes of keys; never the keys themselves.
KEYS: dict[str, dict[str, object]] = {
    hashlib.sha256(b"demo-key-for-alice").hexdigest(): {"subject": "alice", "scopes": ["notes:read", "notes:write"]},
    hashlib.sha256(b"demo-key-for-bob").hexdigest(): {"subject": "bob", "scopes": ["notes:read"]},
}


def authenticate(request: Request) -> dict[str, object] | None:
    key = request.headers.get("x-api-key")
    if key is None:
        return None
    digest = hashlib.sha256(key.encode()).hexdigest()
    for known, principal in KEYS.items():
        if hmac.compare_digest(known, digest):
            return principal
    raise InvalidToken("unknown API key")


mcp = MCPServer("Notes", auth=CallableVerifier(authenticate))


@mcp.tool()
def whoami() -> str:
    """The caller."""
    return get_access_token().subject or "unknown"


@mcp.tool(auth=require_scopes("notes:write"))
def add_note(text: str) -> str:
    """Needs notes:write."""
    return f"saved {text!r}"


if __name__ == "__main__":
    mcp.run(transport="http", host="127.0.0.1", port=8000)
