"""Client authentication at the token endpoint: secret basic and post, private_key_jwt, none.

Real HTTP to a real server; the client_credentials grant is the request each
method authenticates, so a success is a token and a failure is the RFC 6749
section 5.2 error.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bastion.authserver import AuthorizationServer, Client, Registration
from bastion.authserver._client_auth import ASSERTION_TYPE
from bastion.authserver._fetch import SafeFetcher
from bastion.authserver._models import hash_secret
from bastion.testing import JWKSServer, KeyPair

from support.authserver import CONFIDENTIAL_CLIENT, CONFIDENTIAL_SECRET, PUBLIC_CLIENT, basic_auth, make_server, serving
from support.authserver import base_fixture as base_fixture
from support.authserver import http_fixture as http_fixture
from support.clock import FakeClock

CLIENT_KEY = KeyPair.generate("ES256", kid="client-key")
OTHER_KEY = KeyPair.generate("ES256", kid="client-key")
RSA_KEY = KeyPair.generate("RS256", kid="rsa-key")

JWT_CLIENT = Client(
    client_id="jwt-client",
    token_endpoint_auth_method="private_key_jwt",
    grant_types=("client_credentials",),
    jwks={"keys": [CLIENT_KEY.public_jwk(), RSA_KEY.public_jwk()]},
)
POST_SECRET = "post-secret-0123456789-0123456789-abcdef"
POST_CLIENT = Client(
    client_id="post-client",
    token_endpoint_auth_method="client_secret_post",
    grant_types=("client_credentials",),
    client_secret_hash=hash_secret(POST_SECRET),
)
CC = {"grant_type": "client_credentials"}


@pytest.fixture
def server(tmp_path: Path) -> AuthorizationServer:
    return make_server(tmp_path, clients=[PUBLIC_CLIENT, CONFIDENTIAL_CLIENT, POST_CLIENT, JWT_CLIENT])


def assertion(base: str, key: KeyPair = CLIENT_KEY, now: float | None = None, **claims: Any) -> str:
    now = int(time.time() if now is None else now)
    payload: dict[str, Any] = {
        "iss": "jwt-client",
        "sub": "jwt-client",
        "aud": base + "/token",
        "iat": now,
        "exp": now + 60,
        "jti": secrets.token_urlsafe(12),
    }
    payload.update(claims)
    return key.sign({k: v for k, v in payload.items() if v is not None})


def jwt_auth(token: str) -> dict[str, str]:
    return {"client_assertion_type": ASSERTION_TYPE, "client_assertion": token}


def refused(response: httpx2.Response, error: str = "invalid_client") -> bool:
    assert response.status_code == (401 if error == "invalid_client" else 400), response.text
    assert response.json()["error"] == error
    return True


# -- client secrets ---------------------------------------------------------------------------------


async def test_client_secret_basic_auth(base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(base + "/token", data=CC, headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET))
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"


async def test_client_secret_basic_credentials_are_form_urldecoded(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    secret = "s3cr:t with+plus%and space-0123456789"
    odd = Client(
        client_id="odd id:with+colon",
        token_endpoint_auth_method="client_secret_basic",
        grant_types=("client_credentials",),
        client_secret_hash=hash_secret(secret),
    )
    await server.clients.save(odd)
    response = await http.post(base + "/token", data=CC, headers=basic_auth(odd.client_id, secret))
    assert response.status_code == 200


async def test_wrong_basic_secret_is_401_with_a_basic_challenge(base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(
        base + "/token", data=CC, headers=basic_auth("confidential-client", "guessed-secret-4711")
    )
    assert refused(response)
    assert response.headers["www-authenticate"].startswith("Basic")
    assert response.headers["cache-control"] == "no-store"
    assert "guessed-secret-4711" not in response.text


@pytest.mark.parametrize(
    "header",
    [
        "Basic",
        "Basic !!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff:x").decode(),
    ],
)
async def test_malformed_basic_header(base: str, http: httpx2.AsyncClient, header: str) -> None:
    response = await http.post(base + "/token", data=CC, headers={"Authorization": header})
    assert refused(response)
    assert response.headers["www-authenticate"].startswith("Basic")


async def test_another_authorization_scheme_is_refused(base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(base + "/token", data=CC, headers={"Authorization": "Bearer abc"})
    assert refused(response)


async def test_client_secret_post(base: str, http: httpx2.AsyncClient) -> None:
    data = {**CC, "client_id": "post-client", "client_secret": POST_SECRET}
    assert (await http.post(base + "/token", data=data)).status_code == 200
    data["client_secret"] = POST_SECRET + "x"
    response = await http.post(base + "/token", data=data)
    assert refused(response)
    assert "www-authenticate" not in response.headers


async def test_two_methods_at_once_is_invalid_request(base: str, http: httpx2.AsyncClient) -> None:
    data = {**CC, "client_id": "confidential-client", "client_secret": CONFIDENTIAL_SECRET}
    response = await http.post(
        base + "/token", data=data, headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    )
    assert refused(response, "invalid_request")
    both = {**CC, "client_secret": POST_SECRET, **jwt_auth(assertion(base))}
    assert refused(await http.post(base + "/token", data=both), "invalid_request")


async def test_a_method_other_than_the_registered_one_is_refused(base: str, http: httpx2.AsyncClient) -> None:
    # The basic client sends its (right) secret in the body.
    data = {**CC, "client_id": "confidential-client", "client_secret": CONFIDENTIAL_SECRET}
    assert refused(await http.post(base + "/token", data=data))
    # The post client uses Basic: the challenge says Basic was tried.
    response = await http.post(base + "/token", data=CC, headers=basic_auth("post-client", POST_SECRET))
    assert refused(response)
    assert response.headers["www-authenticate"].startswith("Basic")
    # A confidential client cannot pass itself off as public.
    assert refused(await http.post(base + "/token", data={**CC, "client_id": "confidential-client"}))


async def test_unknown_client_and_no_client_at_all(base: str, http: httpx2.AsyncClient) -> None:
    assert refused(await http.post(base + "/token", data=CC, headers=basic_auth("nobody", "secret")))
    assert refused(await http.post(base + "/token", data={**CC, "client_id": "nobody", "client_secret": "x"}))
    assert refused(await http.post(base + "/token", data=CC))


async def test_client_id_parameter_must_agree_with_basic_auth(base: str, http: httpx2.AsyncClient) -> None:
    data = {**CC, "client_id": "post-client"}
    response = await http.post(
        base + "/token", data=data, headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    )
    assert refused(response, "invalid_request")
    data["client_id"] = "confidential-client"
    response = await http.post(
        base + "/token", data=data, headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET)
    )
    assert response.status_code == 200


async def test_an_expired_client_secret_is_refused(
    server: AuthorizationServer, base: str, http: httpx2.AsyncClient
) -> None:
    expired = Client(
        client_id="expired-client",
        token_endpoint_auth_method="client_secret_post",
        grant_types=("client_credentials",),
        client_secret_hash=hash_secret("expired-secret"),
        client_secret_expires_at=int(time.time()) - 10,
    )
    await server.clients.save(expired)
    data = {**CC, "client_id": "expired-client", "client_secret": "expired-secret"}
    assert refused(await http.post(base + "/token", data=data))


async def test_a_public_client_names_itself(base: str, http: httpx2.AsyncClient) -> None:
    # Authenticated as "public-client" (method none), then refused for the grant, not for who it is.
    response = await http.post(base + "/token", data={**CC, "client_id": "public-client"})
    assert refused(response, "unauthorized_client")
    response = await http.post(base + "/token", data=CC, headers=basic_auth("public-client", "made-up"))
    assert refused(response)


# -- private_key_jwt (RFC 7523) ----------------------------------------------------------------------


async def test_private_key_jwt(server: AuthorizationServer, base: str, http: httpx2.AsyncClient) -> None:
    response = await http.post(base + "/token", data={**CC, **jwt_auth(assertion(base))})
    assert response.status_code == 200
    access = await server.verifier.verify(response.json()["access_token"])
    assert access.client_id == "jwt-client"
    # The issuer as audience, with an RSA key of the set, and the client_id parameter repeated.
    token = assertion(base, RSA_KEY, aud=[server.require_issuer()])
    response = await http.post(base + "/token", data={**CC, "client_id": "jwt-client", **jwt_auth(token)})
    assert response.status_code == 200


async def test_private_key_jwt_assertions_are_single_use(base: str, http: httpx2.AsyncClient) -> None:
    token = assertion(base)
    assert (await http.post(base + "/token", data={**CC, **jwt_auth(token)})).status_code == 200
    assert refused(await http.post(base + "/token", data={**CC, **jwt_auth(token)}))


@pytest.mark.parametrize(
    "claims",
    [
        {"aud": "https://elsewhere.example/token"},
        {"aud": None},
        {"iss": "someone-else"},
        {"sub": "post-client"},
        {"exp": None},
        {"exp": int(time.time()) - 120},
        {"exp": int(time.time()) + 3600},
        {"exp": "soon"},
        {"jti": None},
        {"jti": 42},
        {"jti": "x" * 300},
        {"iat": int(time.time()) + 3600},
        {"nbf": int(time.time()) + 3600},
    ],
)
async def test_private_key_jwt_claims_are_checked(base: str, http: httpx2.AsyncClient, claims: dict[str, Any]) -> None:
    response = await http.post(base + "/token", data={**CC, **jwt_auth(assertion(base, **claims))})
    assert refused(response)


async def test_private_key_jwt_signature_is_checked(base: str, http: httpx2.AsyncClient) -> None:
    # Another key with the same kid.
    assert refused(await http.post(base + "/token", data={**CC, **jwt_auth(assertion(base, OTHER_KEY))}))
    # A tampered payload.
    header, payload, signature = assertion(base).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["exp"] += 10
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert refused(await http.post(base + "/token", data={**CC, **jwt_auth(f"{header}.{forged}.{signature}")}))


def _unsigned(header: dict[str, Any], payload: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(payload)}."


async def test_alg_none_and_hmac_with_the_public_key_are_refused(base: str, http: httpx2.AsyncClient) -> None:
    now = int(time.time())
    claims = {"iss": "jwt-client", "sub": "jwt-client", "aud": base + "/token", "exp": now + 60, "jti": "n1"}
    none = _unsigned({"alg": "none"}, claims)
    assert refused(await http.post(base + "/token", data={**CC, **jwt_auth(none)}))
    # Algorithm confusion: HS256 keyed with the public key's text.
    signing_input = _unsigned({"alg": "HS256", "kid": "rsa-key"}, claims)[:-1]
    mac = hmac.new(RSA_KEY.public_key.encode(), signing_input.encode(), hashlib.sha256).digest()
    confused = signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert refused(await http.post(base + "/token", data={**CC, **jwt_auth(confused)}))


@pytest.mark.parametrize(
    "data",
    [
        {"client_assertion_type": "urn:example:other", "client_assertion": "a.b.c"},
        {"client_assertion_type": ASSERTION_TYPE, "client_assertion": "not-a-jwt"},
        {"client_assertion_type": ASSERTION_TYPE, "client_assertion": "a.b.c"},
        {"client_assertion_type": ASSERTION_TYPE, "client_assertion": "é.é.é"},
        {"client_assertion_type": ASSERTION_TYPE},
        {"client_assertion": "a.b.c"},
    ],
)
async def test_malformed_client_assertions(base: str, http: httpx2.AsyncClient, data: dict[str, str]) -> None:
    response = await http.post(base + "/token", data={**CC, **data})
    assert response.status_code in (400, 401)
    assert response.json()["error"] in ("invalid_client", "invalid_request")


async def test_a_secret_client_cannot_use_an_assertion(base: str, http: httpx2.AsyncClient) -> None:
    token = assertion(base, iss="confidential-client", sub="confidential-client")
    assert refused(await http.post(base + "/token", data={**CC, **jwt_auth(token)}))


async def test_private_key_jwt_with_a_jwks_uri(tmp_path: Path) -> None:
    clock = FakeClock()
    new_key = KeyPair.generate("ES256", kid="client-key-2")
    server = make_server(tmp_path, clock=clock, registration=Registration(fetcher=SafeFetcher(allow_private=True)))
    with JWKSServer(CLIENT_KEY) as jwks, serving(server) as base:
        remote = Client(
            client_id="jwt-client",
            token_endpoint_auth_method="private_key_jwt",
            grant_types=("client_credentials",),
            jwks_uri=jwks.url,
        )
        await server.clients.save(remote)
        async with httpx2.AsyncClient() as http:

            async def authenticate(key: KeyPair) -> httpx2.Response:
                token = assertion(base, key, now=clock.now)
                return await http.post(base + "/token", data={**CC, **jwt_auth(token)})

            assert (await authenticate(CLIENT_KEY)).status_code == 200
            assert (await authenticate(CLIENT_KEY)).status_code == 200
            assert jwks.requests == 1
            # The client rotates its key: a fresh key set is not refetched at once...
            jwks.set_keys(new_key)
            assert refused(await authenticate(new_key))
            assert jwks.requests == 1
            # ...but once it is a little older, an unknown signature refetches it.
            clock.now += 31
            assert (await authenticate(new_key)).status_code == 200
            assert jwks.requests == 2
            # An unreachable key set is a refused client, not a server error.
            jwks.status = 500
            clock.now += 600
            assert refused(await authenticate(new_key))
