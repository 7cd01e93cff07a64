"""bastion.fastapi with DPoP-bound tokens: a dependency checks the proof against the body the endpoint reads."""

import json
from collections.abc import Iterator
from typing import Annotated, Any

import httpx2
from fastapi import Depends, FastAPI, Request

from bastion import AccessToken, JWTVerifier
from bastion.fastapi import Bastion
from bastion.testing import KeyPair, ProofKey, dpop_headers, serve

from support.demo import free_port

ISSUER = "https://issuer.example"


def make_app(url: str, signer: KeyPair) -> FastAPI:
    bastion = Bastion(JWTVerifier(public_key=signer.public_key, issuer=ISSUER, audience=url), resource_url=url)
    app = FastAPI()
    bastion.install(app)

    @app.post("/notes")
    async def add(
        request: Request, token: Annotated[AccessToken, Depends(bastion.require_scopes("notes:write"))]
    ) -> dict[str, Any]:
        return {"subject": token.subject, "saved": (await request.json())["text"]}

    return app


def test_a_bound_token_with_its_proof_reaches_the_endpoint_which_still_reads_the_body() -> None:
    signer = KeyPair.generate("ES256")
    key = ProofKey.generate()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    token = signer.create_token(subject="alice", issuer=ISSUER, audience=base, scopes="notes:write", bound_to=key)
    body = json.dumps({"text": "bound"}).encode()
    with serve(make_app(base, signer), port=port):
        headers = {"Content-Type": "application/json"}
        answer = httpx2.post(
            base + "/notes", content=body, headers={**headers, **dpop_headers(key, base + "/notes", token, body)}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"subject": "alice", "saved": "bound"}
        # The proof of another body, or the token alone as a bearer token: refused.
        other = dpop_headers(key, base + "/notes", token, b'{"text": "other"}')
        moved = httpx2.post(base + "/notes", content=body, headers={**headers, **other})
        assert moved.status_code == 401
        assert moved.headers["www-authenticate"].startswith('DPoP error="invalid_dpop_proof"')
        bearer = httpx2.post(base + "/notes", content=body, headers={**headers, "Authorization": f"Bearer {token}"})
        assert bearer.status_code == 401


def test_a_dpop_request_with_a_body_past_the_limit_is_413_before_anything_is_verified() -> None:
    # The proof digests the body, so it is read before the token is checked: within the MCP endpoint's limit.
    signer = KeyPair.generate("ES256")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    huge = b"x" * (4 * 1024 * 1024 + 1)
    with serve(make_app(base, signer), port=port):
        headers = {"Content-Type": "application/json", "Authorization": "DPoP not-even-a-token", "DPoP": "x"}
        assert httpx2.post(base + "/notes", content=huge, headers=headers).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            for _ in range(5):
                yield b"x" * (1024 * 1024)

        assert httpx2.post(base + "/notes", content=chunks(), headers=headers).status_code == 413
        # Within the limit, the bad token is what is refused.
        assert httpx2.post(base + "/notes", content=b"{}", headers=headers).status_code == 401
