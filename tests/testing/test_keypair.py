"""bastion.testing.KeyPair: keys, key sets and tokens for tests."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key, load_pem_public_key
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey, thumbprint

from bastion.testing import KeyPair

ALGORITHMS = ["RS256", "PS256", "ES256", "ES384", "EdDSA", "Ed25519"]


def segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


@pytest.fixture(scope="module")
def rsa_pair() -> KeyPair:
    return KeyPair.generate("RS256")


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")  # joserfc's own decode warns
@pytest.mark.parametrize("alg", ALGORITHMS)
def test_generate_every_algorithm_signs_tokens_its_public_key_verifies(alg: str) -> None:
    keys = KeyPair.generate(alg)
    assert keys.alg == alg
    token = keys.create_token(audience="https://mcp.example")
    # joserfc, independently of bastion, with the published JWK Set.
    key_set = KeySet.import_key_set(keys.jwks())  # type: ignore[arg-type]
    decoded = jwt.decode(token, key_set, algorithms=[alg])
    assert decoded.claims["sub"] == "user"
    assert decoded.header == {"typ": "JWT", "alg": alg, "kid": keys.kid}


def test_key_types_and_pem_forms() -> None:
    expected = {"RS256": rsa.RSAPublicKey, "ES256": ec.EllipticCurvePublicKey, "EdDSA": ed25519.Ed25519PublicKey}
    for alg, kind in expected.items():
        keys = KeyPair.generate(alg)
        assert isinstance(load_pem_public_key(keys.public_key.encode()), kind)
        assert keys.public_key.startswith("-----BEGIN PUBLIC KEY-----")
        assert keys.private_key.startswith("-----BEGIN PRIVATE KEY-----")
        load_pem_private_key(keys.private_key.encode(), password=None)


def test_kid_defaults_to_the_rfc7638_thumbprint(rsa_pair: KeyPair) -> None:
    jwk = rsa_pair.public_jwk()
    assert rsa_pair.kid == thumbprint({"kty": "RSA", "n": jwk["n"], "e": jwk["e"]})
    assert KeyPair.generate("ES256", kid="my-key").kid == "my-key"


def test_public_jwk_and_jwks_hold_no_private_member(rsa_pair: KeyPair) -> None:
    jwk = rsa_pair.public_jwk()
    assert jwk["kid"] == rsa_pair.kid
    assert jwk["alg"] == "RS256"
    assert jwk["use"] == "sig"
    assert jwk["kty"] == "RSA"
    assert not {"d", "p", "q", "dp", "dq", "qi"} & jwk.keys()
    assert rsa_pair.jwks() == {"keys": [jwk]}
    assert not RSAKey.import_key(jwk).is_private


def test_create_token_claims(rsa_pair: KeyPair) -> None:
    before = int(time.time())
    token = rsa_pair.create_token(
        subject="ann",
        issuer="https://as.example",
        audience=["https://a.example", "https://b.example"],
        scopes=["notes:read", "notes:write"],
        expires_in_seconds=60,
        client_id="client-1",
        additional_claims={"tenant": "t1"},
    )
    claims = segment(token, 1)
    assert claims["sub"] == "ann"
    assert claims["iss"] == "https://as.example"
    assert claims["aud"] == ["https://a.example", "https://b.example"]
    assert claims["scope"] == "notes:read notes:write"
    assert claims["client_id"] == "client-1"
    assert claims["tenant"] == "t1"
    assert before <= claims["iat"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 60


def test_create_token_leaves_out_what_is_none(rsa_pair: KeyPair) -> None:
    token = rsa_pair.create_token(subject=None, issuer=None, expires_in_seconds=None, kid=None, issued_at=1000)
    assert segment(token, 1) == {"iat": 1000}
    assert "kid" not in segment(token, 0)


def test_create_token_scopes_as_a_string_and_overrides(rsa_pair: KeyPair) -> None:
    token = rsa_pair.create_token(scopes="a b", additional_claims={"exp": "soon", "sub": 5})
    claims = segment(token, 1)
    assert claims["scope"] == "a b"
    assert claims["exp"] == "soon"
    assert claims["sub"] == 5


def test_headers_and_kid_can_be_set_even_when_odd(rsa_pair: KeyPair) -> None:
    token = rsa_pair.create_token(kid="other", headers={"typ": "at+jwt", "crit": ["exp"], "jku": "not a url"})
    assert segment(token, 0) == {
        "typ": "at+jwt",
        "kid": "other",
        "crit": ["exp"],
        "jku": "not a url",
        "alg": "RS256",
    }
    # alg always stays the pair's own.
    assert segment(rsa_pair.create_token(headers={"alg": "none"}), 0)["alg"] == "RS256"


def test_sign_any_payload(rsa_pair: KeyPair) -> None:
    token = rsa_pair.sign(b"[1, 2]")
    part = token.split(".")[1]
    assert base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)) == b"[1, 2]"
    assert "NaN" in json.dumps(segment(rsa_pair.sign({"exp": float("nan")}), 1))


def test_repr_shows_no_key_material(rsa_pair: KeyPair) -> None:
    assert repr(rsa_pair) == f"KeyPair(alg='RS256', kid={rsa_pair.kid!r})"


def test_unsupported_algorithm_and_public_only_keys() -> None:
    with pytest.raises(ValueError, match="unsupported algorithm"):
        KeyPair.generate("HS256")
    public = RSAKey.import_key(KeyPair.generate().public_key)
    with pytest.raises(ValueError, match="private key"):
        KeyPair(public, "RS256", "kid")
