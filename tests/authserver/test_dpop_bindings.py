"""DPoP bindings over real HTTP (RFC 9449 sections 5 and 10): refresh tokens and authorization codes.

A public client's refresh token issued to a proof is bound to the proof's key, through
every rotation and retry; a confidential client's is bound to its authentication
instead. A code asked for with ``dpop_jkt`` is redeemed only with a proof of that key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion._core.audit import AuditEvent
from bastion._jose.proof_key import ProofKey
from bastion.authserver import AuthorizationServer, User

from support.authserver import (
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    basic_auth,
    clocked_server,
    code_request,
    issue_code,
    oauth_error,
    pkce_pair,
)
from support.authserver import base_fixture as base_fixture
from support.authserver import clock_fixture as clock_fixture
from support.authserver import http_fixture as http_fixture
from support.clock import FakeClock
from support.pages import browsing, callback_query, request_params

LOOPBACK = "http://127.0.0.1:49152/callback"


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def proof(key: ProofKey, base: str, clock: FakeClock) -> dict[str, str]:
    return {"DPoP": key.proof("POST", base + "/token", now=clock.now)}


async def refresh(
    http: httpx2.AsyncClient, base: str, token: str, headers: dict[str, str] | None = None
) -> httpx2.Response:
    """The public client's refresh token request, with a ``DPoP`` header when given."""
    data = {"grant_type": "refresh_token", "refresh_token": token, "client_id": "public-client"}
    return await http.post(base + "/token", data=data, headers=headers)


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> AuthorizationServer:
    return clocked_server(tmp_path, clock)


async def bound_tokens(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock, key: ProofKey
) -> dict[str, Any]:
    response = await http.post(base + "/token", data=await code_request(server), headers=proof(key, base, clock))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["token_type"] == "DPoP"
    return body


async def test_a_bound_refresh_token_needs_a_proof_of_its_key_and_rotation_keeps_the_binding(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    key = ProofKey.generate()
    tokens = await bound_tokens(server, http, base, clock, key)

    events: list[AuditEvent] = []
    server.audit.add_sink(events.append)
    without = await refresh(http, base, tokens["refresh_token"])
    assert without.status_code == 400
    assert oauth_error(without) == "invalid_dpop_proof"
    [refused] = [e for e in events if e.name == "dpop.refused"]
    assert refused.client_id == "public-client"
    assert refused.facts == {"reason": "no proof for a refresh token bound to a key"}
    other = await refresh(http, base, tokens["refresh_token"], headers=proof(ProofKey.generate(), base, clock))
    assert other.status_code == 400
    assert oauth_error(other) == "invalid_grant"

    # Neither refusal spent the token: the client holding the key still refreshes.
    rotated = await refresh(http, base, tokens["refresh_token"], headers=proof(key, base, clock))
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["token_type"] == "DPoP"
    assert claims(rotated.json()["access_token"])["cnf"] == {"jkt": key.jkt}

    successor = rotated.json()["refresh_token"]
    assert oauth_error(await refresh(http, base, successor)) == "invalid_dpop_proof"
    again = await refresh(http, base, successor, headers=proof(ProofKey.generate(), base, clock))
    assert oauth_error(again) == "invalid_grant"
    third = await refresh(http, base, successor, headers=proof(key, base, clock))
    assert third.status_code == 200, third.text
    assert claims(third.json()["access_token"])["cnf"] == {"jkt": key.jkt}


async def test_a_retried_refresh_with_the_same_key_gets_the_same_pair(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    key = ProofKey.generate()
    tokens = await bound_tokens(server, http, base, clock, key)
    first = await refresh(http, base, tokens["refresh_token"], headers=proof(key, base, clock))
    assert first.status_code == 200, first.text
    # The answer was lost; the client retries with a new proof of its key.
    clock.advance(5)
    retry = await refresh(http, base, tokens["refresh_token"], headers=proof(key, base, clock))
    assert retry.status_code == 200, retry.text
    assert retry.json()["refresh_token"] == first.json()["refresh_token"]
    assert retry.json()["access_token"] == first.json()["access_token"]
    assert retry.json()["token_type"] == "DPoP"
    # The family is intact: the successor rotates.
    after = await refresh(http, base, first.json()["refresh_token"], headers=proof(key, base, clock))
    assert after.status_code == 200, after.text


async def test_a_bearer_refresh_token_stays_usable_without_a_proof_and_binds_when_one_comes(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    tokens = (await http.post(base + "/token", data=await code_request(server))).json()
    assert tokens["token_type"] == "Bearer"
    plain = await refresh(http, base, tokens["refresh_token"])
    assert plain.status_code == 200, plain.text
    assert plain.json()["token_type"] == "Bearer"

    # A public client that starts sending proofs gets a refresh token bound to its key from then on.
    key = ProofKey.generate()
    upgraded = await refresh(http, base, plain.json()["refresh_token"], headers=proof(key, base, clock))
    assert upgraded.status_code == 200, upgraded.text
    assert upgraded.json()["token_type"] == "DPoP"
    assert oauth_error(await refresh(http, base, upgraded.json()["refresh_token"])) == "invalid_dpop_proof"


async def test_a_confidential_clients_refresh_token_is_bound_to_its_authentication_not_a_key(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    verifier, challenge = pkce_pair()
    redirect = "https://app.example.com/callback"
    code = await issue_code(server, challenge=challenge, client_id="confidential-client", redirect_uri=redirect)
    auth = basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": redirect}
    key = ProofKey.generate()
    tokens = await http.post(base + "/token", data=data, headers={**auth, **proof(key, base, clock)})
    assert tokens.status_code == 200, tokens.text
    assert claims(tokens.json()["access_token"])["cnf"] == {"jkt": key.jkt}

    # Another key (the client rotated its DPoP key): the refresh token still works, bound to the new key.
    other = ProofKey.generate()
    data = {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]}
    rotated = await http.post(base + "/token", data=data, headers={**auth, **proof(other, base, clock)})
    assert rotated.status_code == 200, rotated.text
    assert claims(rotated.json()["access_token"])["cnf"] == {"jkt": other.jkt}
    # Without a proof: a bearer access token, as the client asked.
    data = {"grant_type": "refresh_token", "refresh_token": rotated.json()["refresh_token"]}
    bearer = await http.post(base + "/token", data=data, headers=auth)
    assert bearer.status_code == 200, bearer.text
    assert bearer.json()["token_type"] == "Bearer"


async def test_dpop_jkt_binds_the_code_to_that_key(tmp_path: Path, clock: FakeClock) -> None:
    key = ProofKey.generate()
    verifier, challenge = pkce_pair()
    options = {"clients": [PUBLIC_CLIENT], "auto_approve": User("alice")}
    async with browsing(tmp_path, clock=clock, **options) as (b, _):
        params = request_params(LOOPBACK, code_challenge=challenge, dpop_jkt=key.jkt)
        code = callback_query(await b.authorize(**params))["code"]
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": LOOPBACK,
            "client_id": "public-client",
            "code_verifier": verifier,
        }
        token = b.base + "/token"
        without = await b.http.post(token, data=data)
        assert without.status_code == 400
        assert oauth_error(without) == "invalid_dpop_proof"
        other = {"DPoP": ProofKey.generate().proof("POST", token, now=clock.now)}
        mismatched = await b.http.post(token, data=data, headers=other)
        assert mismatched.status_code == 400
        assert oauth_error(mismatched) == "invalid_grant"
        assert "dpop_jkt" in mismatched.json()["error_description"]
        # Neither spent the code: the key's holder redeems it.
        redeemed = await b.http.post(token, data=data, headers={"DPoP": key.proof("POST", token, now=clock.now)})
        assert redeemed.status_code == 200, redeemed.text
        assert claims(redeemed.json()["access_token"])["cnf"] == {"jkt": key.jkt}


@pytest.mark.parametrize("value", ["short", "a" * 44, "not base64url ! at all, 43 characters long.."])
async def test_a_malformed_dpop_jkt_goes_back_as_invalid_request(tmp_path: Path, value: str) -> None:
    async with browsing(tmp_path, clients=[PUBLIC_CLIENT], auto_approve=User("alice")) as (b, _):
        response = await b.authorize(**request_params(LOOPBACK, dpop_jkt=value))
    assert callback_query(response)["error"] == "invalid_request"


async def test_a_code_without_dpop_jkt_takes_any_key_or_none(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    bearer = await http.post(base + "/token", data=await code_request(server))
    assert bearer.status_code == 200
    bound = await http.post(
        base + "/token", data=await code_request(server), headers=proof(ProofKey.generate(), base, clock)
    )
    assert bound.status_code == 200
