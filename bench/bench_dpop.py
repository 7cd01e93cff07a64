"""What a DPoP request costs the resource over a bearer request, with a token already seen.

Run with ``python bench/bench_dpop.py [rounds]``. For each proof algorithm it times the
resource guard's whole authentication of a request (header scan, token from the cache,
the proof's checks, its ``jti`` put in the store) against the same for a bearer token, and
beside it the bare ``cryptography`` verification of one proof's signature: the floor, one
signature check per request. Each proof is made beforehand (the client makes them) and used
once, as it must be. Rounds are interleaved and the best counts.
"""

from __future__ import annotations

import asyncio
import base64
import sys
import time
from typing import Any

from cryptography.exceptions import InvalidSignature
from joserfc.jwk import Key
from starlette.requests import HTTPConnection

from bastion import DPoPOptions, JWTVerifier
from bastion._jose.dpop import dpop_algorithms
from bastion._jose.keys import import_jwk
from bastion._jose.proof_key import ProofKey
from bastion._jose.signature import prepare
from bastion._resource.guard import ResourceGuard
from bastion.testing import KeyPair

URL = "https://mcp.example.com/mcp"
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami","arguments":{}}}'
PER_ROUND = 400
ALGORITHMS = ("ES256", "Ed25519", "PS256")


def scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/mcp", "root_path": "", "headers": headers, "query_string": b""}


async def per_request(guard: ResourceGuard, scopes: list[dict[str, Any]]) -> float:
    """Microseconds per authenticated request; every one must pass."""
    start = time.perf_counter()
    for request in scopes:
        result = await guard.authenticate(HTTPConnection(request), BODY)
        if not hasattr(result, "subject"):
            raise RuntimeError(f"a request was refused: {result}")
    return (time.perf_counter() - start) / len(scopes) * 1e6


def bare_verify(proof: str, key: Key, alg: str) -> float:
    """Microseconds per bare signature check of ``proof`` (the floor)."""
    signing_input, _, signature = proof.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    check = prepare(dpop_algorithms([alg])[alg], key)
    start = time.perf_counter()
    for _ in range(PER_ROUND):
        if not check(signing_input.encode(), raw):
            raise InvalidSignature
    return (time.perf_counter() - start) / PER_ROUND * 1e6


async def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    signer = KeyPair.generate("RS256")
    verifier = JWTVerifier(public_key=signer.public_key, issuer="https://issuer.example", audience=URL)
    guard = ResourceGuard(verifier, resource_url=URL, dpop=DPoPOptions())
    bearer = signer.create_token(audience=URL, scopes=["notes:read"])
    bearer_scope = scope([(b"authorization", f"Bearer {bearer}".encode())])
    keys = {alg: ProofKey.generate(alg) for alg in ALGORITHMS}
    tokens = {alg: signer.create_token(audience=URL, scopes=["notes:read"], bound_to=key) for alg, key in keys.items()}
    best: dict[str, float] = {}

    def keep(name: str, value: float) -> None:
        best[name] = min(best.get(name, float("inf")), value)

    await per_request(guard, [bearer_scope] * 10)  # verified once: from now on a token already seen
    for alg, key in keys.items():
        proof = key.proof("POST", URL, access_token=tokens[alg], body=BODY)
        await per_request(
            guard, [scope([(b"authorization", f"DPoP {tokens[alg]}".encode()), (b"dpop", proof.encode())])]
        )
    for _ in range(rounds):
        keep("bearer", await per_request(guard, [bearer_scope] * PER_ROUND))
        for alg, key in keys.items():
            auth = (b"authorization", f"DPoP {tokens[alg]}".encode())
            proofs = [key.proof("POST", URL, access_token=tokens[alg], body=BODY) for _ in range(PER_ROUND)]
            keep(alg, await per_request(guard, [scope([auth, (b"dpop", p.encode())]) for p in proofs]))
            keep(f"{alg} bare", bare_verify(proofs[0], import_jwk(key.public_jwk), alg))
    print(f"best of {rounds} rounds of {PER_ROUND} requests, microseconds per request")
    print(f"{'bearer, token seen':34} {best['bearer']:8.1f}")
    for alg in ALGORITHMS:
        extra = best[alg] - best["bearer"]
        print(
            f"{'DPoP ' + alg + ', token seen':34} {best[alg]:8.1f}   "
            f"(+{extra:.1f} over bearer; the bare signature check alone: {best[alg + ' bare']:.1f})"
        )


if __name__ == "__main__":
    asyncio.run(main())
