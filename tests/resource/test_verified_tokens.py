"""Tokens a verifier builds without pydantic's validation behave as validated ones do."""

from __future__ import annotations

import pickle

from bastion import AccessToken, JWTVerifier
from bastion.testing import KeyPair

AUDIENCE = "https://mcp.example.com/mcp"
ISSUER = "https://issuer.example"


async def _two_tokens() -> tuple[AccessToken, AccessToken, list[str]]:
    keys = KeyPair.generate("ES256")
    verifier = JWTVerifier(public_key=keys.public_key, issuer=ISSUER, audience=AUDIENCE)
    raw = [
        keys.create_token(subject=name, issuer=ISSUER, audience=AUDIENCE, scopes=["notes:read"], client_id="c1")
        for name in ("alice", "bob")
    ]
    return await verifier.verify(raw[0]), await verifier.verify(raw[1]), raw


async def test_a_verified_token_equals_the_validated_one() -> None:
    alice, _, raw = await _two_tokens()
    validated = AccessToken.model_validate(alice.model_dump())
    assert validated == alice
    assert alice.model_dump() == validated.model_dump()
    assert alice.model_fields_set == validated.model_fields_set
    assert alice.model_copy() == alice
    assert pickle.loads(pickle.dumps(alice)) == alice
    assert alice.token == raw[0]
    assert alice.subject == "alice"
    assert alice.scopes == ["notes:read"]
    assert alice.issuer == ISSUER
    assert alice.resource == AUDIENCE
    assert alice.claims is not None


async def test_setting_one_tokens_private_value_leaves_the_others_alone() -> None:
    # The tokens of one verifier share their private values until one of them is changed.
    alice, bob, _ = await _two_tokens()
    alice._upstream_source = object()
    assert alice._upstream_source is not None
    assert bob._upstream_source is None


async def test_the_claims_of_cached_tokens_share_their_names() -> None:
    alice, bob, _ = await _two_tokens()
    assert alice.claims is not None
    assert bob.claims is not None
    for a, b in zip(sorted(alice.claims), sorted(bob.claims), strict=True):
        assert a is b
