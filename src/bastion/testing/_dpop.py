"""The headers of a DPoP request (RFC 9449 section 7.1, the MCP DPoP profile), for tests."""

from __future__ import annotations

from bastion._jose.proof_key import ProofKey

__all__ = ["dpop_headers"]


def dpop_headers(
    key: ProofKey, url: str, token: str, body: bytes = b"", *, method: str = "POST", nonce: str | None = None
) -> dict[str, str]:
    """``Authorization: DPoP <token>`` and a fresh proof of ``key`` for one request.

    The proof names ``method`` and ``url``, hashes ``token`` (``ath``) and digests ``body``
    (the MCP profile's ``content_digest``): send exactly that body, once (a proof's ``jti`` is
    single-use). For example, with ``httpx2``::

        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
        headers |= dpop_headers(key, url, token, body)
        response = await http.post(url, content=body, headers=headers)
    """
    return {
        "Authorization": f"DPoP {token}",
        "DPoP": key.proof(method, url, access_token=token, nonce=nonce, body=body),
    }
