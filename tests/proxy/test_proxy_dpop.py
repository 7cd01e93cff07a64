"""The OAuth proxy issues DPoP-bound tokens of its own as the authorization server does (RFC 9449).

The proxy's token endpoint is the authorization server's: a sign-in through the fake
provider with ``dpop_jkt`` and a proof gets a bound access token and a bound refresh
token, which needs a proof of the same key; the metadata lists the proof algorithms.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2

from bastion._jose.proof_key import ProofKey

from support.fake_upstream import Authorization, approve, consent_page, fake_upstream, proxy_of


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


async def test_the_proxys_tokens_are_bound_to_the_clients_dpop_key(tmp_path: Path) -> None:
    key = ProofKey.generate()
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        token_url = base + "/token"
        async with httpx2.AsyncClient() as http:
            document = (await http.get(base + "/.well-known/oauth-authorization-server")).json()
            assert "ES256" in document["dpop_signing_alg_values_supported"]

            request = Authorization(base, extra={"dpop_jkt": key.jkt})
            upstream = await approve(http, base, await consent_page(http, request))
            callback = await http.get(fake.sign_in(upstream.headers["location"]))
            code = parse_qs(urlsplit(callback.headers["location"]).query)["code"][0]
            data = {
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": request.verifier,
                "redirect_uri": request.redirect_uri,
                "client_id": request.client_id,
                "resource": base + "/mcp",
            }
            stranger = {"DPoP": ProofKey.generate().proof("POST", token_url)}
            assert (await http.post(token_url, data=data, headers=stranger)).json()["error"] == "invalid_grant"
            issued = await http.post(token_url, data=data, headers={"DPoP": key.proof("POST", token_url)})
            assert issued.status_code == 200, issued.text
            tokens = issued.json()
            assert tokens["token_type"] == "DPoP"
            assert claims(tokens["access_token"])["cnf"] == {"jkt": key.jkt}

            refresh = {
                "grant_type": "refresh_token",
                "refresh_token": tokens["refresh_token"],
                "client_id": "public-client",
            }
            without = await http.post(token_url, data=refresh)
            assert without.status_code == 400
            assert without.json()["error"] == "invalid_dpop_proof"
            rotated = await http.post(token_url, data=refresh, headers={"DPoP": key.proof("POST", token_url)})
            assert rotated.status_code == 200, rotated.text
            assert claims(rotated.json()["access_token"])["cnf"] == {"jkt": key.jkt}
