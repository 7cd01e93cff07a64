"""The hot path of a token seen before: what is remembered per token follows every change of the policies.

The middleware decides once per verified token whether any policy could refuse it (and
builds the SDK's user objects once); a policy set, removed or replaced after that must
count from the next request on, for the same token.
"""

from __future__ import annotations

import httpx2

from bastion import require_role, require_scopes

from support.notes import MCP_HEADERS, TOKENS, StaticVerifier, notes_server, rpc, served


def call(url: str, token: str, tool: str) -> httpx2.Response:
    body = rpc("tools/call", {"name": tool, "arguments": {}})
    return httpx2.post(url, json=body, headers={**MCP_HEADERS, "Authorization": f"Bearer {token}"})


def test_a_policy_added_while_serving_applies_to_a_token_already_seen() -> None:
    mcp = notes_server(auth=StaticVerifier(TOKENS))

    @mcp.tool()
    def ping() -> str:
        return "pong"

    with served(mcp, stateless_http=True, json_response=True) as url:
        assert call(url, "writer", "ping").status_code == 200
        assert call(url, "writer", "ping").status_code == 200  # remembered: nothing refuses this token

        @mcp.tool(auth=require_scopes("notes:admin"))
        def purge() -> str:
            return "purged"

        refused = call(url, "writer", "purge")
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        # And a stricter default for every tool without a policy of its own.
        mcp.registry.default = require_role("admin")
        assert call(url, "writer", "ping").status_code == 403
        assert call(url, "admin", "ping").status_code == 200


def test_a_bearer_token_of_bytes_outside_ascii_is_refused_not_served_from_the_cache() -> None:
    with served(notes_server(), stateless_http=True, json_response=True) as url:
        assert call(url, "reader", "list_notes").status_code == 200
        body = rpc("tools/call", {"name": "list_notes", "arguments": {}})
        for header in ("Bearer reader\xe9".encode("latin-1"), "Bearer readeré".encode()):
            headers = [
                *((name.encode(), value.encode()) for name, value in MCP_HEADERS.items()),
                (b"Authorization", header),
            ]
            answer = httpx2.post(url, json=body, headers=headers)
            assert answer.status_code == 401
