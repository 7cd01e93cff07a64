"""DPoP-bound tokens of a real third-party issuer at bastion's resource server (RFC 9449 section 7).

oidc-provider (Node.js) issues JWT access tokens for the MCP endpoint (RFC 8707, RFC 9068) to the
``client_credentials`` grant, bound to the key of the token request's ``DPoP`` proof (``cnf.jkt``).
``JWTVerifier`` behind ``MCPServer`` takes them from its key set over HTTP, as a deployment would:
only with the ``DPoP`` scheme and a fresh proof of that key, never as a bearer token. A token the
provider issued without a proof is a bearer token and works as one.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import httpx2
import pytest

from bastion import JWTVerifier, MCPServer
from bastion.testing import ProofKey, dpop_headers, serve

from support.demo import free_port
from support.dpop import dpop_notes
from support.notes import MCP_HEADERS, rpc
from support.oidc import OIDCProvider, skip_without_node

READ = json.dumps(rpc("tools/call", {"name": "whoami", "arguments": {}})).encode()
WRITE = json.dumps(rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}})).encode()


@dataclass(frozen=True)
class Stack:
    """The provider and the MCP server that trusts it."""

    provider: OIDCProvider
    url: str
    token_endpoint: str


def notes(url: str, discovery: dict[str, Any]) -> MCPServer:
    verifier = JWTVerifier(jwks_uri=discovery["jwks_uri"], issuer=discovery["issuer"], audience=url)
    return dpop_notes(verifier, url)


@contextmanager
def stack(dpop: bool | Literal["nonce"]) -> Iterator[Stack]:
    skip_without_node()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    # The provider must know the resource before it starts; the MCP server then listens on its port.
    with OIDCProvider(resource=url, dpop=dpop) as provider:
        discovery = httpx2.get(provider.config_url).json()
        app = notes(url, discovery).streamable_http_app(stateless_http=True, json_response=True)
        with serve(app, port=port):
            yield Stack(provider, url, discovery["token_endpoint"])


@pytest.fixture(name="idp", scope="module")
def idp_fixture() -> Iterator[Stack]:
    """Fixture ``idp``: oidc-provider with DPoP, and the MCP server trusting its tokens."""
    with stack(dpop=True) as running:
        yield running


@pytest.fixture(name="key")
def key_fixture() -> ProofKey:
    return ProofKey.generate()


async def token_request(
    idp: Stack, key: ProofKey | None, scope: str = "notes:read", nonce: str | None = None
) -> httpx2.Response:
    """A ``client_credentials`` request for the MCP endpoint, with a proof of ``key`` when one is given."""
    headers = {} if key is None else {"DPoP": key.proof("POST", idp.token_endpoint, nonce=nonce)}
    form = {"grant_type": "client_credentials", "resource": idp.url, "scope": scope}
    async with httpx2.AsyncClient() as http:
        return await http.post(
            idp.token_endpoint,
            data=form,
            headers=headers,
            auth=(idp.provider.client_id, idp.provider.client_secret),
        )


async def issued(idp: Stack, key: ProofKey | None, scope: str = "notes:read") -> dict[str, Any]:
    response = await token_request(idp, key, scope)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


async def call(url: str, headers: dict[str, str], body: bytes = READ) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(url, content=body, headers={**MCP_HEADERS, **headers})


def first_challenge(response: httpx2.Response) -> str:
    return response.headers.get_list("www-authenticate")[0]


async def test_a_token_request_with_a_proof_gets_a_jwt_bound_to_its_key(idp: Stack, key: ProofKey) -> None:
    answer = await issued(idp, key)
    assert answer["token_type"] == "DPoP"
    assert answer["scope"] == "notes:read"
    token = answer["access_token"]
    assert segment(token, 0)["typ"] == "at+jwt"
    claims = segment(token, 1)
    assert claims["cnf"] == {"jkt": key.jkt}
    assert claims["aud"] == idp.url
    assert claims["client_id"] == idp.provider.client_id == claims["sub"]
    assert claims["iss"] == idp.provider.issuer


async def test_the_bound_token_calls_a_tool_with_a_proof_of_its_key_only(idp: Stack, key: ProofKey) -> None:
    token = (await issued(idp, key))["access_token"]
    answer = await call(idp.url, dpop_headers(key, idp.url, token, READ))
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["content"][0]["text"] == "me"

    bearer = await call(idp.url, {"Authorization": f"Bearer {token}"})
    assert bearer.status_code == 401
    assert first_challenge(bearer).startswith('Bearer error="invalid_token"')
    assert "DPoP-bound" in bearer.json()["error_description"]

    thief = await call(idp.url, dpop_headers(ProofKey.generate(), idp.url, token, READ))
    assert thief.status_code == 401
    assert first_challenge(thief).startswith('DPoP error="invalid_dpop_proof"')

    replay = dpop_headers(key, idp.url, token, READ)
    assert (await call(idp.url, replay)).status_code == 200
    replayed = await call(idp.url, replay)
    assert replayed.status_code == 401
    assert first_challenge(replayed).startswith('DPoP error="invalid_dpop_proof"')
    assert "already used" in replayed.json()["error_description"]


async def test_the_providers_scopes_decide_a_step_up_over_dpop(idp: Stack, key: ProofKey) -> None:
    reader = (await issued(idp, key, "notes:read"))["access_token"]
    refused = await call(idp.url, dpop_headers(key, idp.url, reader, WRITE), WRITE)
    assert refused.status_code == 403
    assert first_challenge(refused).startswith('DPoP error="insufficient_scope"')
    writer = (await issued(idp, key, "notes:read notes:write"))["access_token"]
    saved = await call(idp.url, dpop_headers(key, idp.url, writer, WRITE), WRITE)
    assert saved.status_code == 200, saved.text
    assert saved.json()["result"]["content"][0]["text"] == "saved x"


async def test_without_a_proof_the_provider_issues_a_bearer_token_that_works_as_one(idp: Stack, key: ProofKey) -> None:
    answer = await issued(idp, None)
    assert answer["token_type"] == "Bearer"
    token = answer["access_token"]
    assert "cnf" not in segment(token, 1)
    assert (await call(idp.url, {"Authorization": f"Bearer {token}"})).status_code == 200
    # RFC 9449 section 7.1: the DPoP scheme is for bound tokens only.
    as_dpop = await call(idp.url, dpop_headers(key, idp.url, token, READ))
    assert as_dpop.status_code == 401
    assert first_challenge(as_dpop).startswith('DPoP error="invalid_token"')


async def test_the_provider_refuses_a_proof_replayed_at_its_token_endpoint(idp: Stack, key: ProofKey) -> None:
    proof = key.proof("POST", idp.token_endpoint)
    form = {"grant_type": "client_credentials", "resource": idp.url, "scope": "notes:read"}
    auth = (idp.provider.client_id, idp.provider.client_secret)
    async with httpx2.AsyncClient() as http:
        first = await http.post(idp.token_endpoint, data=form, headers={"DPoP": proof}, auth=auth)
        again = await http.post(idp.token_endpoint, data=form, headers={"DPoP": proof}, auth=auth)
    assert first.status_code == 200
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


async def test_a_token_issued_to_a_proof_with_the_providers_nonce_works_at_the_resource(key: ProofKey) -> None:
    with stack(dpop="nonce") as idp:
        # RFC 9449 section 8: the first proof is refused with a nonce to put in the next one.
        first = await token_request(idp, key)
        assert first.status_code == 400
        assert first.json()["error"] == "use_dpop_nonce"
        nonce = first.headers["dpop-nonce"]
        second = await token_request(idp, key, nonce=nonce)
        assert second.status_code == 200, second.text
        assert second.json()["token_type"] == "DPoP"
        token = second.json()["access_token"]
        # The resource asks for no nonce of its own: a proof without one is accepted.
        answer = await call(idp.url, dpop_headers(key, idp.url, token, READ))
        assert answer.status_code == 200, answer.text
