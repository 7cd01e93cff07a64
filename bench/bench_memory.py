"""Memory per cached verified token: ``python bench/bench_memory.py [count]``.

Verifies ``count`` (default 5,000) distinct ES256 tokens of about 490 characters with a
``JWTVerifier`` and reports, with tracemalloc, the Python heap that the verified-token
cache holds per token: once beyond the token string the request carried (which the
cache keeps a reference to, not a copy), and once with it.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tracemalloc

from bastion import JWTVerifier
from bastion.testing import KeyPair

AUDIENCE = "https://mcp.example.com/mcp"


async def main(count: int) -> None:
    keys = KeyPair.generate("ES256")
    verifier = JWTVerifier(public_key=keys.public_key, issuer="https://issuer.example", audience=AUDIENCE)
    tokens = [
        keys.create_token(
            audience=AUDIENCE,
            subject=f"user-{index:06d}@example.com",
            scopes=["notes:read", "notes:write"],
            client_id="https://client.example.com/metadata.json",
        )
        for index in range(count)
    ]
    await verifier.verify(tokens[0])  # warm up: imports, prepared keys, cached headers
    verifier.cache.clear()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for token in tokens:
        await verifier.verify(token)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / count
    string = sum(sys.getsizeof(token) for token in tokens) / count
    print(f"tokens cached                          {len(verifier.cache):>8}")
    print(f"token length                           {sum(map(len, tokens)) / count:>8.0f} characters")
    print(f"bytes per cached token, beyond the string {held:>7.0f}  (target <= 1,536)")
    print(f"bytes per cached token, with the string   {held + string:>7.0f}")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000))
