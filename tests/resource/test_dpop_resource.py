"""DPoP at the resource (RFC 9449 section 7, the MCP DPoP profile) with tokens of another issuer.

Keycloak, Auth0 and Okta issue JWTs bound to a client's key (``cnf.jkt``); ``JWTVerifier``
behind ``MCPServer`` checks them as bastion's own: with the ``DPoP`` scheme and a proof of
that key, never as a bearer token. Every bad proof is a 401 ``invalid_dpop_proof`` with a
DPoP challenge, never a 5xx.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
from joserfc import jws
from joserfc.jwk import ECKey
from joserfc.jws import JWSRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bastion import ConfigurationError, DPoPOptions, JWTVerifier, MCPServer, require_scopes
from bastion._jose.dpop import access_token_hash, content_digest
from bastion.storage import SQLiteStore
from bastion.testing import KeyPair, ProofKey, dpop_headers, serve

from support.demo import free_port
from support.dpop import dpop_notes
from support.notes import MCP_HEADERS, rpc

ISSUER = "https://idp.example"
URL_EXAMPLE = "https://notes.example/mcp"
SIGNER = KeyPair.generate("RS256")
BODY = json.dumps(rpc("tools/call", {"name": "whoami", "arguments": {}})).encode()
WRITE = json.dumps(rpc("tools/call", {"name": "add_note", "arguments": {"text": "x"}})).encode()


def server(url: str, **options: Any) -> MCPServer:
    verifier = JWTVerifier(public_key=SIGNER.public_key, issuer=ISSUER, audience=url)
    mcp = dpop_notes(verifier, url, **options)

    @mcp.custom_route("/echo", methods=["POST"], auth=require_scopes("notes:read"))
    async def echo(request: Request) -> Response:
        return JSONResponse({"echoed": (await request.body()).decode()})

    return mcp


@contextmanager
def served(**options: Any) -> Iterator[str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    with serve(server(url, **options).streamable_http_app(stateless_http=True, json_response=True), port=port):
        yield url


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with served() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def key() -> ProofKey:
    return ProofKey.generate()


def token_for(url: str, key: ProofKey | None, scopes: str = "notes:read") -> str:
    return SIGNER.create_token(subject="alice", issuer=ISSUER, audience=url, scopes=scopes, bound_to=key)


async def post(url: str, headers: dict[str, str], body: bytes = BODY) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        return await http.post(url, content=body, headers={**MCP_HEADERS, **headers})


def challenges(response: httpx2.Response) -> list[str]:
    return response.headers.get_list("www-authenticate")


def refused_proof(response: httpx2.Response) -> bool:
    first = challenges(response)[0]
    return response.status_code == 401 and first.startswith("DPoP ") and 'error="invalid_dpop_proof"' in first


async def test_the_metadata_and_the_challenges_offer_dpop_beside_bearer(url: str) -> None:
    async with httpx2.AsyncClient() as http:
        document = (await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))).json()
    assert "ES256" in document["dpop_signing_alg_values_supported"]
    assert "none" not in document["dpop_signing_alg_values_supported"]
    assert document["dpop_bound_access_tokens_required"] is False
    anonymous = await post(url, {})
    assert anonymous.status_code == 401
    bearer, dpop = challenges(anonymous)
    assert bearer.startswith("Bearer ")
    assert "resource_metadata=" in bearer
    assert dpop.startswith("DPoP ")
    assert 'algs="' in dpop
    assert "ES256" in dpop
    assert "resource_metadata=" in dpop


async def test_a_bound_token_of_another_issuer_works_with_a_proof_of_its_key(url: str, key: ProofKey) -> None:
    token = token_for(url, key)
    for _ in range(2):  # the second time from the cache of verified tokens: the proof is still checked
        answer = await post(url, dpop_headers(key, url, token, BODY))
        assert answer.status_code == 200, answer.text
        assert "me" in answer.text
    # And a GET (the event stream) proves possession as well, of an empty body.
    async with httpx2.AsyncClient() as http:
        headers = {"Accept": "text/event-stream", **dpop_headers(key, url, token, method="GET")}
        async with http.stream("GET", url, headers=headers) as stream:
            assert stream.status_code != 401


async def test_a_bound_token_is_never_accepted_as_a_bearer_token(url: str, key: ProofKey) -> None:
    token = token_for(url, key)
    assert (await post(url, dpop_headers(key, url, token, BODY))).status_code == 200  # now in the cache
    answer = await post(url, {"Authorization": f"Bearer {token}"})
    assert answer.status_code == 401
    first = challenges(answer)[0]
    assert first.startswith("Bearer ")
    assert 'error="invalid_token"' in first
    assert "DPoP-bound" in answer.json()["error_description"]
    assert token not in answer.text


async def test_bearer_tokens_still_work_and_are_not_taken_with_the_dpop_scheme(url: str, key: ProofKey) -> None:
    token = token_for(url, None)
    assert (await post(url, {"Authorization": f"Bearer {token}"})).status_code == 200
    answer = await post(url, dpop_headers(key, url, token, BODY))
    assert answer.status_code == 401
    assert challenges(answer)[0].startswith('DPoP error="invalid_token"')


class AnyHeader(JWSRegistry):
    """Signs any header, for proofs whose header the resource must refuse."""

    def check_header(self, header: dict[str, Any]) -> None:
        """Accept the header as it is."""


def proof_by_hand(key: ProofKey, token: str, url: str, header: dict[str, Any] | None = None, **claims: Any) -> str:
    """A proof with the given claims changed (``None`` drops one), signed by ``key``."""
    values: dict[str, Any] = {
        "jti": base64.urlsafe_b64encode(time.time_ns().to_bytes(8, "big")).decode(),
        "htm": "POST",
        "htu": url,
        "iat": int(time.time()),
        "ath": access_token_hash(token),
        "content_digest": content_digest(BODY),
    }
    values.update(claims)
    values = {name: value for name, value in values.items() if value is not None}
    protected = {"typ": "dpop+jwt", "alg": key.alg, "jwk": key.public_jwk, **(header or {})}
    protected = {name: value for name, value in protected.items() if value is not None}
    payload = json.dumps(values).encode()
    return jws.serialize_compact(protected, payload, key._key, algorithms=[key.alg], registry=AnyHeader())


BAD_CLAIMS: dict[str, dict[str, Any]] = {
    "another method": {"htm": "GET"},
    "another URL": {"htu": "http://127.0.0.1:1/mcp"},
    "another path": {"htu": "{origin}/other"},
    "no htu": {"htu": None},
    "an old iat": {"iat": int(time.time()) - 3600},
    "an iat from the future": {"iat": int(time.time()) + 3600},
    "a string iat": {"iat": "now"},
    "no jti": {"jti": None},
    "a huge jti": {"jti": "j" * 1000},
    "no ath": {"ath": None},
    "the ath of another token": {"ath": access_token_hash("another")},
    "no content_digest": {"content_digest": None},
    "the content_digest of another body": {"content_digest": content_digest(WRITE)},
    "a content_digest that is not a string": {"content_digest": {"sha-256": 1}},
}


@pytest.mark.parametrize("case", list(BAD_CLAIMS))
async def test_every_bad_claim_is_a_401_invalid_dpop_proof(url: str, key: ProofKey, case: str) -> None:
    token = token_for(url, key)
    claims: dict[str, Any] = {
        name: value.format(origin=url.removesuffix("/mcp")) if isinstance(value, str) else value
        for name, value in BAD_CLAIMS[case].items()
    }
    answer = await post(url, {"Authorization": f"DPoP {token}", "DPoP": proof_by_hand(key, token, url, **claims)})
    assert refused_proof(answer), (case, answer.status_code, challenges(answer))


def private_jwk(key: ProofKey) -> dict[str, Any]:
    return dict(key._key.as_dict(private=True))


BAD_HEADERS: dict[str, Any] = {
    "another typ": {"typ": "JWT"},
    "a private key in the jwk": "private",
    "no jwk": {"jwk": None},
    "a jwk that is a string": {"jwk": "key"},
    "a symmetric jwk": {"jwk": {"kty": "oct", "k": "c2VjcmV0"}},
    "a key of another curve": {"jwk": dict(ECKey.generate_key("P-384").as_dict(private=False))},
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
async def test_every_bad_header_is_a_401_invalid_dpop_proof(url: str, key: ProofKey, case: str) -> None:
    token = token_for(url, key)
    header = {"jwk": private_jwk(key)} if BAD_HEADERS[case] == "private" else dict(BAD_HEADERS[case])
    answer = await post(url, {"Authorization": f"DPoP {token}", "DPoP": proof_by_hand(key, token, url, header)})
    assert refused_proof(answer), (case, answer.status_code, challenges(answer))
    assert private_jwk(key)["d"] not in answer.text + " ".join(challenges(answer))


GARBAGE = {
    "no proof": None,
    "an empty proof": "",
    "not a JWT": "not-a-jwt",
    "a JWT of JWTs": ".".join(["eyJ0eXAiOiJkcG9wK2p3dCJ9"] * 5),
    "a huge proof": "a" * 20_000,
    "a proof signed with alg none": (
        base64.urlsafe_b64encode(b'{"typ":"dpop+jwt","alg":"none"}').rstrip(b"=").decode() + ".e30."
    ),
    "a nested header": base64.urlsafe_b64encode(b'{"typ":' * 500 + b"1" + b"}" * 500).decode() + ".e30.AA",
}


@pytest.mark.parametrize("case", list(GARBAGE))
async def test_a_missing_or_malformed_proof_is_a_401_never_a_5xx(url: str, key: ProofKey, case: str) -> None:
    token = token_for(url, key)
    headers = {"Authorization": f"DPoP {token}"}
    proof = GARBAGE[case]
    if proof is not None:
        headers["DPoP"] = proof
    answer = await post(url, headers)
    assert refused_proof(answer), (case, answer.status_code, challenges(answer))


async def test_two_proofs_another_key_and_a_replay_are_refused(url: str, key: ProofKey) -> None:
    token = token_for(url, key)
    async with httpx2.AsyncClient() as http:
        two = [("authorization", f"DPoP {token}"), ("dpop", key.proof("POST", url, access_token=token, body=BODY))]
        two.append(("dpop", key.proof("POST", url, access_token=token, body=BODY)))
        answer = await http.post(url, content=BODY, headers=[*MCP_HEADERS.items(), *two])
        assert refused_proof(answer)
    thief = ProofKey.generate()
    assert refused_proof(await post(url, dpop_headers(thief, url, token, BODY)))
    headers = dpop_headers(key, url, token, BODY)
    assert (await post(url, headers)).status_code == 200
    replayed = await post(url, headers)
    assert refused_proof(replayed)
    assert "already used" in replayed.json()["error_description"]


async def test_a_step_up_over_dpop_is_a_dpop_challenge(url: str, key: ProofKey) -> None:
    token = token_for(url, key, scopes="notes:read")
    answer = await post(url, dpop_headers(key, url, token, WRITE), WRITE)
    assert answer.status_code == 403
    first = challenges(answer)[0]
    assert first.startswith('DPoP error="insufficient_scope"')
    assert "notes:write" in first


async def test_a_resource_can_require_dpop() -> None:
    key = ProofKey.generate()
    with served(dpop=DPoPOptions(required=True)) as url:
        async with httpx2.AsyncClient() as http:
            document = (await http.get(url.replace("/mcp", "/.well-known/oauth-protected-resource/mcp"))).json()
        assert document["dpop_bound_access_tokens_required"] is True
        bearer = await post(url, {"Authorization": f"Bearer {token_for(url, None)}"})
        assert bearer.status_code == 401
        assert [c.split(" ", 1)[0] for c in challenges(bearer)] == ["DPoP"]
        assert (await post(url, dpop_headers(key, url, token_for(url, key), BODY))).status_code == 200


async def test_without_dpop_a_bound_token_is_refused_and_nothing_offers_dpop() -> None:
    key = ProofKey.generate()
    with served(dpop=False) as url:
        token = token_for(url, key)
        assert (await post(url, {"Authorization": f"Bearer {token}"})).status_code == 401
        answer = await post(url, dpop_headers(key, url, token, BODY))
        assert answer.status_code == 401
        assert [c.split(" ", 1)[0] for c in challenges(answer)] == ["Bearer"]


async def test_replicas_sharing_a_store_refuse_a_proof_used_at_another(tmp_path: Path) -> None:
    key = ProofKey.generate()
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    store = SQLiteStore(tmp_path / "shared.db")
    other_store = SQLiteStore(tmp_path / "shared.db")
    first = server(url, dpop=DPoPOptions(store=store)).streamable_http_app(stateless_http=True, json_response=True)
    second = server(url, dpop=DPoPOptions(store=other_store)).streamable_http_app(
        stateless_http=True, json_response=True
    )
    token = token_for(url, key)
    headers = dpop_headers(key, url, token, BODY)
    # The two replicas answer the same public URL; each is served in turn on the same port.
    with serve(first, port=port):
        assert (await post(url, headers)).status_code == 200
    with serve(second, port=port):
        assert refused_proof(await post(url, headers))
        assert (await post(url, dpop_headers(key, url, token, BODY))).status_code == 200


@pytest.mark.parametrize(
    ("value", "offered", "required"),
    [("on", ["Bearer", "DPoP"], False), ("Required", ["DPoP"], True), ("off", ["Bearer"], None)],
)
def test_bastion_dpop_sets_what_a_server_built_without_dpop_does(
    value: str, offered: list[str], required: bool | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_DPOP", value)
    guard = server(URL_EXAMPLE).guard
    assert guard is not None
    assert list(guard.schemes) == offered
    assert (guard.dpop.options.required if guard.dpop is not None else None) == required
    # The argument wins over the variable.
    assert server(URL_EXAMPLE, dpop=DPoPOptions(required=True)).guard.schemes == ("DPoP",)  # type: ignore[union-attr]


def test_a_bad_bastion_dpop_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_DPOP", "maybe")
    with pytest.raises(ConfigurationError, match=r"^BASTION_DPOP must be on, required or off"):
        server(URL_EXAMPLE)


async def test_a_guarded_route_checks_the_proof_against_the_body_it_then_reads(url: str, key: ProofKey) -> None:
    token = token_for(url, key)
    echo = url.removesuffix("/mcp") + "/echo"
    async with httpx2.AsyncClient() as http:
        answer = await http.post(echo, content=b"hello", headers=dpop_headers(key, echo, token, b"hello"))
        assert answer.status_code == 200
        assert answer.json() == {"echoed": "hello"}
        moved = await http.post(echo, content=b"other", headers=dpop_headers(key, echo, token, b"hello"))
        assert refused_proof(moved)
        # The proof names /echo: one made for the MCP endpoint is refused here.
        elsewhere = await http.post(echo, content=b"hello", headers=dpop_headers(key, url, token, b"hello"))
        assert refused_proof(elsewhere)
