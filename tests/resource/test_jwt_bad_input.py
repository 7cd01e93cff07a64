"""JWTVerifier against hostile and malformed tokens: every one refused with a bastion error.

Nothing here may raise anything but an InvalidToken subclass, and no error message
may carry the token.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15
from cryptography.hazmat.primitives.hashes import SHA256, SHA512, HashAlgorithm

from bastion import (
    InvalidClaims,
    InvalidSignature,
    InvalidToken,
    JWTVerifier,
    UnsupportedAlgorithm,
)
from bastion._resource.verifier import MAX_TOKEN_LENGTH
from bastion.testing import JWKSServer, KeyPair

AUDIENCE = "https://mcp.example.com/mcp"


def b64(data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(value: Any) -> str:
    return b64(json.dumps(value))


def rs256(keys: KeyPair, header: dict[str, Any], payload: str) -> str:
    """A token with any header, signed with ``keys`` by ``cryptography`` directly."""
    private = keys.key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    signing_input = f"{b64json(header)}.{payload}"
    return f"{signing_input}.{b64(private.sign(signing_input.encode(), PKCS1v15(), SHA256()))}"


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return KeyPair.generate("RS256", kid="good")


@pytest.fixture(scope="module")
def attacker() -> KeyPair:
    return KeyPair.generate("RS256", kid="good")  # same kid, other key


@pytest.fixture
def verifier(keys: KeyPair) -> JWTVerifier:
    return JWTVerifier(public_key=keys.public_key, issuer="https://issuer.example", audience=AUDIENCE)


@pytest.fixture
def token(keys: KeyPair) -> str:
    return keys.create_token(audience=AUDIENCE, scopes="notes:read", client_id="client-1")


async def refused(verifier: JWTVerifier, token: str, kind: type[InvalidToken] = InvalidToken) -> InvalidToken:
    """Assert ``token`` is refused with ``kind``, by check() and by the SDK protocol, without leaking it."""
    with pytest.raises(InvalidToken) as caught:
        await verifier.check(token)
    error = caught.value
    assert isinstance(error, kind), f"{type(error).__name__}: {error}"
    for text in (str(error), repr(error), error.description):
        assert token not in text
        for part in token.split("."):
            assert len(part) < 16 or part not in text
    assert await verifier.verify_token(token) is None
    return error


# -- signatures ----------------------------------------------------------------------


async def test_a_flipped_signature_bit(verifier: JWTVerifier, token: str) -> None:
    header, payload, signature = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(signature + "=="))
    raw[10] ^= 1
    await refused(verifier, f"{header}.{payload}.{b64(bytes(raw))}", InvalidSignature)


def rsa_signed(keys: KeyPair, signing_input: str, digest: HashAlgorithm) -> bytes:
    private = keys.key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    return private.sign(signing_input.encode(), PKCS1v15(), digest)


async def test_a_pkcs1_signature_over_another_digest(verifier: JWTVerifier, keys: KeyPair, token: str) -> None:
    # A valid RSA signature of the same bytes, but whose DigestInfo names SHA-512, not RS256's SHA-256.
    header, payload, _ = token.split(".")
    signature = rsa_signed(keys, f"{header}.{payload}", SHA512())
    await refused(verifier, f"{header}.{payload}.{b64(signature)}", InvalidSignature)


async def test_a_pkcs1_signature_of_the_wrong_length(verifier: JWTVerifier, keys: KeyPair, token: str) -> None:
    # RFC 8017 section 8.2.2 step 1: a signature is exactly as long as the modulus. The same
    # integer with a leading zero octet, or without one it has, is refused.
    header, payload, _ = token.split(".")
    for nonce in range(2000):
        signing_input = f"{header}.{b64json({'nonce': nonce, **json.loads(base64.urlsafe_b64decode(payload + '=='))})}"
        signature = rsa_signed(keys, signing_input, SHA256())
        if signature[0] == 0:
            break
    else:
        pytest.fail("no signature with a leading zero octet in 2000 tries")
    assert (await verifier.check(f"{signing_input}.{b64(signature)}")).subject == "user"
    await refused(verifier, f"{signing_input}.{b64(signature[1:])}", InvalidSignature)
    await refused(verifier, f"{signing_input}.{b64(bytes(1) + signature)}", InvalidSignature)


async def test_a_signature_by_another_key_with_the_same_kid(verifier: JWTVerifier, attacker: KeyPair) -> None:
    await refused(verifier, attacker.create_token(audience=AUDIENCE), InvalidSignature)


async def test_a_tampered_payload(verifier: JWTVerifier, token: str) -> None:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "notes:read notes:admin"
    await refused(verifier, f"{header}.{b64json(claims)}.{signature}", InvalidSignature)


async def test_a_tampered_header(verifier: JWTVerifier, token: str) -> None:
    _, payload, signature = token.split(".")
    header = b64json({"alg": "RS256", "kid": "good", "typ": "at+jwt"})
    await refused(verifier, f"{header}.{payload}.{signature}", InvalidSignature)


async def test_a_stripped_signature(verifier: JWTVerifier, token: str) -> None:
    header, payload, _ = token.split(".")
    await refused(verifier, f"{header}.{payload}.", InvalidSignature)


async def test_a_forgery_is_refused_as_one_whatever_its_claims(verifier: JWTVerifier, attacker: KeyPair) -> None:
    # Claims are looked at only once the signature verifies: no oracle on them for forgers.
    expired = attacker.create_token(audience="https://elsewhere.example", expires_in_seconds=-3600)
    await refused(verifier, expired, InvalidSignature)
    await refused(verifier, attacker.sign(b"not json"), InvalidSignature)


# -- algorithms --------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
@pytest.mark.parametrize("signature", ["", "c2lnbmF0dXJl"])
async def test_alg_none_in_every_casing(verifier: JWTVerifier, token: str, alg: str, signature: str) -> None:
    _, payload, _ = token.split(".")
    await refused(verifier, f"{b64json({'alg': alg, 'typ': 'JWT'})}.{payload}.{signature}", UnsupportedAlgorithm)


async def test_hs256_signed_with_the_public_key_as_secret(verifier: JWTVerifier, keys: KeyPair, token: str) -> None:
    # The classic algorithm confusion (RFC 8725 section 2.1): the attacker knows the public key.
    _, payload, _ = token.split(".")
    for secret in (keys.public_key, keys.public_key.strip(), json.dumps(keys.public_jwk())):
        signing_input = f"{b64json({'alg': 'HS256', 'typ': 'JWT', 'kid': 'good'})}.{payload}"
        mac = hmac.new(secret.encode(), signing_input.encode(), hashlib.sha256).digest()
        await refused(verifier, f"{signing_input}.{b64(mac)}", UnsupportedAlgorithm)


@pytest.mark.parametrize("alg", ["RS512", "PS256", "ES256", "rs256", "RS256 ", "EdDSA", "HS256", "unknown"])
async def test_algorithms_outside_the_allow_list(verifier: JWTVerifier, token: str, alg: str) -> None:
    _, payload, signature = token.split(".")
    await refused(verifier, f"{b64json({'alg': alg})}.{payload}.{signature}", UnsupportedAlgorithm)


@pytest.mark.parametrize("alg", [None, 5, ["RS256"], {"RS256": True}, True])
async def test_alg_that_is_missing_or_not_a_string(verifier: JWTVerifier, token: str, alg: object) -> None:
    _, payload, signature = token.split(".")
    header = {"typ": "JWT"} if alg is None else {"alg": alg}
    await refused(verifier, f"{b64json(header)}.{payload}.{signature}")


async def test_key_type_must_match_even_when_allowed(keys: KeyPair) -> None:
    # An EC verifier allowing only ES256 never hands its key to another family.
    ec = KeyPair.generate("ES256")
    verifier = JWTVerifier(public_key=ec.public_key, audience=AUDIENCE)
    await refused(verifier, keys.create_token(audience=AUDIENCE), UnsupportedAlgorithm)


# -- headers -----------------------------------------------------------------------------


@pytest.mark.parametrize("crit", [["exp"], [], "exp", ["b64"], None])
async def test_crit_is_never_understood(verifier: JWTVerifier, keys: KeyPair, crit: object) -> None:
    token = keys.create_token(audience=AUDIENCE, headers={"crit": crit, "exp": 1})
    error = await refused(verifier, token)
    assert "crit" in str(error)


async def test_unencoded_payload_is_refused(verifier: JWTVerifier, keys: KeyPair, token: str) -> None:
    await refused(verifier, keys.create_token(audience=AUDIENCE, headers={"b64": False, "crit": ["b64"]}))
    # b64: false without crit is malformed (RFC 7797 section 6); joserfc will not even sign it.
    payload = token.split(".")[1]
    await refused(verifier, rs256(keys, {"alg": "RS256", "b64": False}, payload))
    await refused(verifier, rs256(keys, {"alg": "RS256", "b64": "false"}, payload))
    # b64: true is the default and harmless.
    assert (await verifier.check(keys.create_token(audience=AUDIENCE, headers={"b64": True}))).subject == "user"


@pytest.mark.parametrize("kid", [5, ["good"], {"kid": "good"}, True])
async def test_kid_that_is_not_a_string(verifier: JWTVerifier, keys: KeyPair, kid: object) -> None:
    await refused(verifier, keys.create_token(audience=AUDIENCE, kid=None, headers={"kid": kid}))


async def test_keys_named_by_the_token_are_never_fetched_nor_trusted(
    verifier: JWTVerifier, keys: KeyPair, attacker: KeyPair
) -> None:
    with JWKSServer(attacker) as server:
        embedded = {
            "jku": server.url,
            "x5u": server.url,
            "jwk": attacker.public_jwk(),
            "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
        }
        await refused(verifier, attacker.create_token(audience=AUDIENCE, headers=embedded), InvalidSignature)
        # Signed by the trusted key, the same headers are simply ignored.
        assert (await verifier.check(keys.create_token(audience=AUDIENCE, headers=embedded))).subject == "user"
        assert server.requests == 0


@pytest.mark.parametrize("header", ["[]", '"RS256"', "123", "null", "true", '{"alg": "RS256"', "", "\u00e9"])
async def test_a_header_that_is_not_a_json_object(verifier: JWTVerifier, token: str, header: str) -> None:
    _, payload, signature = token.split(".")
    await refused(verifier, f"{b64(header)}.{payload}.{signature}")


# -- structure and encoding ----------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 4, 5])
async def test_wrong_number_of_segments(verifier: JWTVerifier, token: str, count: int) -> None:
    parts = token.split(".")
    await refused(verifier, ".".join((parts * 2)[:count]))


@pytest.mark.parametrize("value", ["", ".", "..", "...", "a.b.c", "not a token"])
async def test_not_a_jws_at_all(verifier: JWTVerifier, value: str) -> None:
    with pytest.raises(InvalidToken):
        await verifier.check(value)


def mangle(segment: str) -> Iterator[str]:
    """Ways to break the base64url of a segment."""
    yield segment + "="  # padding is not base64url (RFC 7515 section 2)
    yield segment + "=="
    yield segment[:-1] + "+"  # the other alphabet
    yield segment[:10] + "/" + segment[10:]
    yield segment[:10] + "!" + segment[10:]
    yield segment[:10] + " " + segment[10:]
    yield segment[:10] + "\t" + segment[10:]
    yield segment + "A"[: (1 if len(segment) % 4 == 0 else 0)]  # a length of 4n + 1
    yield segment[:5]  # truncated to 4n + 1


@pytest.mark.parametrize("index", [0, 1, 2])
async def test_malformed_base64url(verifier: JWTVerifier, token: str, index: int) -> None:
    parts = token.split(".")
    for broken in mangle(parts[index]):
        if broken == parts[index]:
            continue
        await refused(verifier, ".".join([*parts[:index], broken, *parts[index + 1 :]]))


async def test_non_canonical_base64url_does_not_make_a_second_valid_token(verifier: JWTVerifier, token: str) -> None:
    # 256 signature bytes leave 4 unused bits in the last character; only one value is canonical.
    header, payload, signature = token.split(".")
    assert len(signature) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    index = alphabet.index(signature[-1])
    twin = alphabet[index | 1]
    await refused(verifier, f"{header}.{payload}.{signature[:-1]}{twin}")


async def test_non_ascii_tokens(verifier: JWTVerifier, token: str) -> None:
    await refused(verifier, token[:20] + "\u00e9" + token[21:])
    await refused(verifier, token + "\udcff")


async def test_huge_tokens(verifier: JWTVerifier, keys: KeyPair) -> None:
    big = keys.create_token(audience=AUDIENCE, additional_claims={"pad": "x" * MAX_TOKEN_LENGTH})
    error = await refused(verifier, big)
    assert error.description == "The access token is too long"
    with pytest.raises(InvalidToken):
        await verifier.verify("a" * (10 * 1024 * 1024))
    # Just under the limit, a fat but honest claims set passes.
    fat = keys.create_token(audience=AUDIENCE, additional_claims={"pad": "x" * (MAX_TOKEN_LENGTH // 2)})
    assert (await verifier.check(fat)).claims is not None


# -- nesting and payloads --------------------------------------------------------------------


@pytest.mark.parametrize("depth", [5_000, 100_000])
async def test_deeply_nested_header(verifier: JWTVerifier, token: str, depth: int) -> None:
    _, payload, signature = token.split(".")
    for nested in ("[" * depth + "]" * depth, '{"a":' * depth + "1" + "}" * depth):
        await refused(verifier, f"{b64(nested)}.{payload}.{signature}")


@pytest.mark.parametrize("depth", [5_000, 100_000])
async def test_deeply_nested_payload(verifier: JWTVerifier, keys: KeyPair, depth: int) -> None:
    await refused(verifier, keys.sign("[" * depth + "]" * depth))  # signed: parsed, refused
    claims = '{"exp": 9999999999, "a": ' + '{"b":' * depth + "1" + "}" * depth + "}"
    await refused(verifier, keys.sign(claims))


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"claims"', b"", b"null", b"\xff\xfe{}", b'{"a": 1} x'])
async def test_a_signed_payload_that_is_not_a_json_object(verifier: JWTVerifier, keys: KeyPair, payload: bytes) -> None:
    await refused(verifier, keys.sign(payload))


async def test_whitespace_around_the_claims_is_fine(verifier: JWTVerifier, keys: KeyPair, token: str) -> None:
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert (await verifier.check(keys.sign(" \n" + json.dumps(claims, indent=2) + "\n "))).subject == "user"


NOT_NUMBERS = [
    '"123"',
    "true",
    "false",
    "null",
    "[1]",
    "{}",
]
#: Not JSON (RFC 8259 section 6 has no NaN or infinity), or beyond any double: the payload
#: itself is refused.
NOT_JSON_NUMBERS = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1" * 400]


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", NOT_NUMBERS)
async def test_numeric_dates_must_be_finite_numbers(
    verifier: JWTVerifier, keys: KeyPair, token: str, claim: str, value: str
) -> None:
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    claims[claim] = "PLACEHOLDER"
    payload = json.dumps(claims).replace('"PLACEHOLDER"', value)
    await refused(verifier, keys.sign(payload), InvalidClaims)


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", NOT_JSON_NUMBERS)
async def test_numbers_that_are_not_json_refuse_the_payload(
    verifier: JWTVerifier, keys: KeyPair, token: str, claim: str, value: str
) -> None:
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    claims[claim] = "PLACEHOLDER"
    payload = json.dumps(claims).replace('"PLACEHOLDER"', value)
    error = await refused(verifier, keys.sign(payload))
    assert "not base64url-encoded JSON" in str(error)


async def test_integers_too_long_to_parse(verifier: JWTVerifier, keys: KeyPair) -> None:
    # Python refuses integer literals over 4300 digits: a ValueError that must not leak.
    await refused(verifier, keys.sign('{"exp": ' + "9" * 5000 + "}"))


# -- no other exception, ever ------------------------------------------------------------------


async def test_random_mutations_are_refused_with_bastion_errors(verifier: JWTVerifier, token: str) -> None:
    rng = random.Random(7515)
    alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x00\u00e9{}[]"'
    for _ in range(2000):
        chars = list(token)
        for _ in range(rng.randint(1, 4)):
            action = rng.randrange(3)
            position = rng.randrange(len(chars))
            if action == 0:
                chars[position] = rng.choice(alphabet)
            elif action == 1:
                chars.insert(position, rng.choice(alphabet))
            else:
                del chars[position]
        mutated = "".join(chars)
        if mutated == token:
            continue
        with pytest.raises(InvalidToken):
            await verifier.check(mutated)


async def test_random_bytes_in_every_segment(verifier: JWTVerifier, token: str) -> None:
    rng = random.Random(7519)
    parts = token.split(".")
    for _ in range(500):
        index = rng.randrange(3)
        garbage = b64(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))))
        with pytest.raises(InvalidToken):
            await verifier.check(".".join([*parts[:index], garbage, *parts[index + 1 :]]))
