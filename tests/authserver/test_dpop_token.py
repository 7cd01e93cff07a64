"""DPoP at the token endpoint over real HTTP (RFC 9449): bound tokens for proofs, bearer tokens without.

Each request goes to a real uvicorn server on a real SQLite file; the proofs are made by
``ProofKey``, the client's side of ``bastion._jose.dpop``, at the server's (fake) time.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion import ConfigurationError
from bastion._core.audit import AuditEvent
from bastion._jose.dpop import DEFAULT_ALGORITHMS
from bastion._jose.proof_key import ProofKey
from bastion.authserver import AuthorizationServer, Client, DPoPSettings
from bastion.authserver._models import hash_secret

from support.authserver import (
    CONFIDENTIAL_CLIENT,
    CONFIDENTIAL_SECRET,
    PUBLIC_CLIENT,
    basic_auth,
    clocked_server,
    code_request,
    issue_code,
    oauth_error,
    pkce_pair,
    serving,
)
from support.authserver import base_fixture as base_fixture
from support.authserver import clock_fixture as clock_fixture
from support.authserver import http_fixture as http_fixture
from support.clock import FakeClock

#: A public client that registered ``dpop_bound_access_tokens`` (RFC 9449 section 5.2).
ALWAYS_DPOP = Client(
    client_id="always-dpop",
    redirect_uris=("http://127.0.0.1/callback",),
    dpop_bound_access_tokens=True,
)


def claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, unverified (the server signed it; the tests read it)."""
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def proof(key: ProofKey, base: str, clock: FakeClock, **options: Any) -> dict[str, str]:
    """The ``DPoP`` header of a proof of ``key`` for the token endpoint at ``base``, made now."""
    options.setdefault("now", clock.now)
    return {"DPoP": key.proof("POST", base + "/token", **options)}


@pytest.fixture
def server(tmp_path: Path, clock: FakeClock) -> AuthorizationServer:
    return clocked_server(tmp_path, clock, clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, ALWAYS_DPOP])


@pytest.fixture
def events(server: AuthorizationServer) -> list[AuditEvent]:
    found: list[AuditEvent] = []
    server.audit.add_sink(found.append)
    return found


async def test_a_proof_gets_an_access_token_bound_to_its_key(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    key = ProofKey.generate()
    response = await http.post(base + "/token", data=await code_request(server), headers=proof(key, base, clock))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "DPoP"
    assert claims(body["access_token"])["cnf"] == {"jkt": key.jkt}
    assert "dpop-nonce" not in response.headers  # nonces are off by default


async def test_without_a_proof_the_token_is_a_bearer_token_as_before(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str
) -> None:
    response = await http.post(base + "/token", data=await code_request(server))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert "cnf" not in claims(body["access_token"])


@pytest.mark.parametrize("alg", ["ES256", "ES384", "Ed25519", "PS256", "RS256"])
async def test_every_advertised_kind_of_key_binds(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock, alg: str
) -> None:
    key = ProofKey.generate(alg)
    response = await http.post(base + "/token", data=await code_request(server), headers=proof(key, base, clock))
    assert response.status_code == 200, response.text
    assert claims(response.json()["access_token"])["cnf"] == {"jkt": key.jkt}


async def test_client_credentials_tokens_are_bound_too(http: httpx2.AsyncClient, base: str, clock: FakeClock) -> None:
    key = ProofKey.generate()
    response = await http.post(
        base + "/token",
        data={"grant_type": "client_credentials"},
        headers={**basic_auth("confidential-client", CONFIDENTIAL_SECRET), **proof(key, base, clock)},
    )
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "DPoP"
    assert claims(response.json()["access_token"])["cnf"] == {"jkt": key.jkt}


def tamper(value: str) -> str:
    header, payload, signature = value.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    return f"{header}.{payload}.{flipped}"


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("garbage", "the proof is not a valid JWT"),
        ("signature", "the proof's signature does not verify with its jwk"),
        ("htu", "the proof's htu is not this endpoint's URL"),
        ("htm", "the proof's htm is not the request's method"),
        ("old", "the proof's iat is outside the accepted window"),
        ("future", "the proof's iat is outside the accepted window"),
    ],
)
async def test_an_invalid_proof_is_a_400_invalid_dpop_proof_and_spends_nothing(
    server: AuthorizationServer,
    http: httpx2.AsyncClient,
    base: str,
    clock: FakeClock,
    events: list[AuditEvent],
    case: str,
    description: str,
) -> None:
    key = ProofKey.generate()
    values = {
        "garbage": "not.a-proof",
        "signature": tamper(key.proof("POST", base + "/token", now=clock.now)),
        "htu": key.proof("POST", base + "/other", now=clock.now),
        "htm": key.proof("GET", base + "/token", now=clock.now),
        "old": key.proof("POST", base + "/token", now=clock.now - 400),
        "future": key.proof("POST", base + "/token", now=clock.now + 120),
    }
    data = await code_request(server)
    response = await http.post(base + "/token", data=data, headers={"DPoP": values[case]})
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_dpop_proof"
    assert response.json()["error_description"] == description
    refused = [e for e in events if e.name == "dpop.refused"]
    assert [e.facts["reason"] for e in refused] == [description]
    assert values[case] not in json.dumps([e.facts for e in events])
    # The proof was checked before anything was spent: the code still works with a good one.
    retry = await http.post(base + "/token", data=data, headers=proof(key, base, clock))
    assert retry.status_code == 200, retry.text


async def test_a_proof_with_an_unknown_key_type_is_refused_without_echoing_it(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str
) -> None:
    header = base64.urlsafe_b64encode(
        json.dumps({"typ": "dpop+jwt", "alg": "ES256", "jwk": {"kty": "'<script>"}}).encode()
    )
    value = header.decode().rstrip("=") + ".e30.c2ln"
    response = await http.post(base + "/token", data=await code_request(server), headers={"DPoP": value})
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_dpop_proof"
    assert response.json()["error_description"] == "the DPoP proof is invalid"


async def test_two_dpop_headers_are_refused(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    key = ProofKey.generate()
    headers = [("DPoP", key.proof("POST", base + "/token", now=clock.now)) for _ in range(2)]
    response = await http.post(base + "/token", data=await code_request(server), headers=headers)
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_dpop_proof"
    assert response.json()["error_description"] == "send one DPoP header"


async def test_a_proof_is_used_once(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    key = ProofKey.generate()
    headers = proof(key, base, clock)
    first = await http.post(base + "/token", data=await code_request(server), headers=headers)
    assert first.status_code == 200, first.text
    replayed = await http.post(base + "/token", data=await code_request(server), headers=headers)
    assert replayed.status_code == 400
    assert oauth_error(replayed) == "invalid_dpop_proof"
    assert "already used" in replayed.json()["error_description"]


async def test_a_replayed_proof_is_refused_by_another_server_on_the_same_store(
    tmp_path: Path, server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock
) -> None:
    # One deployment: one public URL (the issuer), so one htu for both.
    replica = clocked_server(tmp_path, clock, issuer=base, clients=[PUBLIC_CLIENT])
    key = ProofKey.generate()
    headers = proof(key, base, clock)
    assert (await http.post(base + "/token", data=await code_request(server), headers=headers)).status_code == 200
    with serving(replica) as other:
        fresh = await http.post(other + "/token", data=await code_request(replica), headers=proof(key, base, clock))
        assert fresh.status_code == 200, fresh.text
        replayed = await http.post(other + "/token", data=await code_request(replica), headers=headers)
    assert replayed.status_code == 400
    assert oauth_error(replayed) == "invalid_dpop_proof"
    assert "already used" in replayed.json()["error_description"]


async def test_a_client_registered_with_dpop_bound_access_tokens_needs_a_proof(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str, clock: FakeClock, events: list[AuditEvent]
) -> None:
    verifier, challenge = pkce_pair()
    data = {
        "grant_type": "authorization_code",
        "code": await issue_code(server, challenge=challenge, client_id="always-dpop"),
        "code_verifier": verifier,
        "redirect_uri": "http://127.0.0.1:5173/callback",
        "client_id": "always-dpop",
    }
    refused = await http.post(base + "/token", data=data)
    assert refused.status_code == 400
    assert oauth_error(refused) == "invalid_dpop_proof"
    assert "dpop_bound_access_tokens" in refused.json()["error_description"]
    assert [e.facts["reason"] for e in events if e.name == "dpop.refused"] == ["no proof"]
    token_refused = [e for e in events if e.name == "token.refused"]
    assert token_refused[-1].client_id == "always-dpop"
    assert token_refused[-1].facts["reason"] == "invalid_dpop_proof"
    # Refused before the grant: the code is still good, with a proof.
    bound = await http.post(base + "/token", data=data, headers=proof(ProofKey.generate(), base, clock))
    assert bound.status_code == 200, bound.text
    assert bound.json()["token_type"] == "DPoP"


async def test_dpop_bound_access_tokens_is_read_from_a_registration(
    server: AuthorizationServer, http: httpx2.AsyncClient, base: str
) -> None:
    metadata = {"redirect_uris": ["http://127.0.0.1/cb"], "token_endpoint_auth_method": "none"}
    registered = await http.post(base + "/register", json={**metadata, "dpop_bound_access_tokens": True})
    assert registered.status_code == 201, registered.text
    assert registered.json()["dpop_bound_access_tokens"] is True
    client = await server.clients.get(registered.json()["client_id"])
    assert client is not None
    assert client.dpop_bound_access_tokens
    plain = await http.post(base + "/register", json=metadata)
    assert "dpop_bound_access_tokens" not in plain.json()
    wrong = await http.post(base + "/register", json={**metadata, "dpop_bound_access_tokens": "yes"})
    assert wrong.status_code == 400
    assert oauth_error(wrong) == "invalid_client_metadata"


async def test_a_server_requiring_dpop_refuses_every_request_without_a_proof(
    tmp_path: Path, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    server = clocked_server(tmp_path, clock, dpop=DPoPSettings(required=True))
    with serving(server) as base:
        refused = await http.post(
            base + "/token",
            data={"grant_type": "client_credentials"},
            headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
        )
        assert refused.status_code == 400
        assert oauth_error(refused) == "invalid_dpop_proof"
        bound = await http.post(
            base + "/token",
            data={"grant_type": "client_credentials"},
            headers={
                **basic_auth("confidential-client", CONFIDENTIAL_SECRET),
                **proof(ProofKey.generate(), base, clock),
            },
        )
        assert bound.status_code == 200, bound.text


async def test_an_algorithm_outside_the_configured_ones_is_refused(
    tmp_path: Path, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    server = clocked_server(tmp_path, clock, dpop=DPoPSettings(algorithms=["ES256"]))
    with serving(server) as base:
        document = (await http.get(base + "/.well-known/oauth-authorization-server")).json()
        assert document["dpop_signing_alg_values_supported"] == ["ES256"]
        response = await http.post(
            base + "/token", data=await code_request(server), headers=proof(ProofKey.generate("PS256"), base, clock)
        )
    assert response.status_code == 400
    assert oauth_error(response) == "invalid_dpop_proof"


@pytest.mark.parametrize("algorithms", [["none"], ["HS256"], [], "ES256"])
def test_dpop_settings_take_asymmetric_algorithms_only(algorithms: Any) -> None:
    with pytest.raises((ConfigurationError, TypeError)):
        DPoPSettings(algorithms=algorithms)


@pytest.mark.parametrize("path", ["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"])
async def test_the_metadata_lists_the_proof_algorithms(http: httpx2.AsyncClient, base: str, path: str) -> None:
    document = (await http.get(base + path)).json()
    assert document["dpop_signing_alg_values_supported"] == list(DEFAULT_ALGORITHMS)
    assert "none" not in document["dpop_signing_alg_values_supported"]
    assert not any(alg.startswith("HS") for alg in document["dpop_signing_alg_values_supported"])


INTROSPECTOR_SECRET = "introspector-secret-value-0123456789abcdef"
INTROSPECTOR = Client(
    client_id="introspector",
    token_endpoint_auth_method="client_secret_basic",
    grant_types=("client_credentials",),
    client_secret_hash=hash_secret(INTROSPECTOR_SECRET),
    introspection=True,
)


async def test_introspection_gives_a_bound_tokens_cnf_and_token_type(
    tmp_path: Path, http: httpx2.AsyncClient, clock: FakeClock
) -> None:
    server = clocked_server(tmp_path, clock, clients=[PUBLIC_CLIENT, INTROSPECTOR])
    key = ProofKey.generate()
    with serving(server) as base:
        bound = await http.post(base + "/token", data=await code_request(server), headers=proof(key, base, clock))
        bearer = await http.post(base + "/token", data=await code_request(server))
        auth = basic_auth("introspector", INTROSPECTOR_SECRET)
        answers = [
            (await http.post(base + "/introspect", data={"token": r.json()["access_token"]}, headers=auth)).json()
            for r in (bound, bearer)
        ]
    assert answers[0]["active"] is True
    assert answers[0]["cnf"] == {"jkt": key.jkt}
    assert answers[0]["token_type"] == "DPoP"
    assert answers[1]["token_type"] == "Bearer"
    assert "cnf" not in answers[1]


async def test_browsers_may_send_dpop_and_read_the_nonce(http: httpx2.AsyncClient, base: str) -> None:
    preflight = await http.options(
        base + "/token",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert "DPoP" in preflight.headers["access-control-allow-headers"]
    answer = await http.post(base + "/token", data={"grant_type": "client_credentials"})
    assert "DPoP-Nonce" in answer.headers["access-control-expose-headers"]
