"""A private_key_jwt client's jwks_uri: fetched through the SSRF-safe fetcher, never once per request.

Real HTTP to a real server and a real key set endpoint: what a client does with
its jwks_uri cannot make the server fetch it more often than the refetch floor.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import httpx2

from bastion.authserver import Client, Registration
from bastion.authserver._client_auth import ASSERTION_TYPE, JWKS_REFETCH_AFTER
from bastion.authserver._fetch import SafeFetcher
from bastion.testing import JWKSServer, KeyPair

from support.authserver import make_server, serving
from support.clock import FakeClock

KEY = KeyPair.generate("ES256", kid="client-key")
STRANGER = KeyPair.generate("ES256", kid="stranger")
CC = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE}


def assertion(base: str, key: KeyPair, now: float) -> str:
    return key.sign(
        {
            "iss": "jwt-client",
            "sub": "jwt-client",
            "aud": base + "/token",
            "iat": int(now),
            "exp": int(now) + 60,
            "jti": secrets.token_urlsafe(12),
        }
    )


async def test_a_failing_or_unmatched_jwks_uri_is_fetched_at_most_once_per_interval(tmp_path: Path) -> None:
    clock = FakeClock()
    server = make_server(tmp_path, clock=clock, registration=Registration(fetcher=SafeFetcher(allow_private=True)))
    with JWKSServer(KEY) as jwks, serving(server) as base:
        await server.clients.save(
            Client(
                client_id="jwt-client",
                token_endpoint_auth_method="private_key_jwt",
                grant_types=("client_credentials",),
                jwks_uri=jwks.url,
            )
        )
        async with httpx2.AsyncClient() as http:

            async def authenticate(key: KeyPair) -> int:
                data = {**CC, "client_assertion": assertion(base, key, clock.now)}
                return (await http.post(base + "/token", data=data)).status_code

            # Signatures of a key the set lacks, many at once: one fetch, each refused.
            assert await asyncio.gather(*(authenticate(STRANGER) for _ in range(5))) == [401] * 5
            assert jwks.requests == 1
            # A key set that cannot be fetched: refused, and fetched again only after the interval.
            jwks.status = 500
            clock.advance(600)
            assert [await authenticate(KEY) for _ in range(3)] == [401] * 3
            assert jwks.requests == 2
            clock.advance(JWKS_REFETCH_AFTER)
            jwks.status = 200
            assert await authenticate(KEY) == 200
            assert jwks.requests == 3
