"""How long JWTVerifier takes for an RS256 token, against the bare signature check.

Run with ``python bench/bench_verify.py [rounds]``. Every measurement is taken
``rounds`` times, interleaved so that load from other processes hits all of
them alike, and the best round counts (the least disturbed by that load).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any

from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from joserfc.util import urlsafe_b64decode

from bastion import JWTVerifier
from bastion.testing import KeyPair

ITERATIONS = 2000
AUDIENCE = "https://mcp.example.com/mcp"


def per_call(function: Callable[[], object], iterations: int = ITERATIONS) -> float:
    """Microseconds per call of a synchronous function."""
    start = time.perf_counter()
    for _ in range(iterations):
        function()
    return (time.perf_counter() - start) / iterations * 1e6


def per_await(factory: Callable[[], Coroutine[Any, Any, object]], iterations: int = ITERATIONS) -> float:
    """Microseconds per call of a coroutine that completes without suspending.

    The coroutine is driven by hand, so no event loop overhead is counted: the
    figure is what the verifier itself costs inside a request.
    """
    start = time.perf_counter()
    for _ in range(iterations):
        coroutine = factory()
        try:
            coroutine.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - the static-key path never suspends
            raise RuntimeError("the coroutine suspended")
    return (time.perf_counter() - start) / iterations * 1e6


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    keys = KeyPair.generate("RS256")
    token = keys.create_token(audience=AUDIENCE, scopes=["notes:read", "notes:write"], client_id="client-1")
    verifier = JWTVerifier(public_key=keys.public_key, issuer="https://issuer.example", audience=AUDIENCE)
    asyncio.run(verifier.verify(token))  # warm up; the token is now in the verified-token cache

    public_key = load_pem_public_key(keys.public_key.encode())
    assert isinstance(public_key, RSAPublicKey)
    header, payload, signature_segment = token.encode().split(b".")
    signing_input = header + b"." + payload
    signature = urlsafe_b64decode(signature_segment)

    def bare() -> None:
        public_key.verify(signature, signing_input, PKCS1v15(), SHA256())

    measurements: dict[str, Callable[[], float]] = {
        "bare cryptography verify": lambda: per_call(bare),
        "first-seen RS256 (JWTVerifier.check)": lambda: per_await(lambda: verifier.check(token)),
        "cached (JWTVerifier.verify, hit)": lambda: per_await(lambda: verifier.verify(token), ITERATIONS * 20),
    }
    best = dict.fromkeys(measurements, float("inf"))
    for _ in range(rounds):
        for name, measure in measurements.items():
            gc.collect()
            best[name] = min(best[name], measure())

    width = max(map(len, best)) + 2
    print(f"{'measurement':<{width}}{'us/token':>10}")
    for name, micros in best.items():
        print(f"{name:<{width}}{micros:>10.2f}")
    ratio = best["first-seen RS256 (JWTVerifier.check)"] / best["bare cryptography verify"]
    print(f"{'ratio first-seen / bare':<{width}}{ratio:>10.2f}  (target <= 1.30)")
    print(f"{'cached hit':<{width}}{best['cached (JWTVerifier.verify, hit)']:>10.2f}  (target < 5.00)")


if __name__ == "__main__":
    main()
