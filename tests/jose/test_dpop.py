"""DPoP proofs (RFC 9449 section 4.3): every check of a proof, and the thumbprint of its key (RFC 7638)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jws
from joserfc.jwk import ECKey, OctKey

from bastion._core.errors import ConfigurationError, InvalidDPoPProof
from bastion._jose.dpop import (
    MAX_PROOF_LENGTH,
    access_token_hash,
    check_proof,
    content_digest,
    dpop_algorithms,
    normalize_htu,
    thumbprint,
)
from bastion._jose.proof_key import ProofKey

URL = "https://mcp.example.com/mcp"
BODY = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"whoami"}}'
ALGORITHMS = dpop_algorithms()
NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def check(proof: str, **options: Any) -> Any:
    arguments: dict[str, Any] = {"method": "POST", "url": URL, "algorithms": ALGORITHMS, "now": NOW}
    arguments.update(options)
    return check_proof(proof, **arguments)


def signed(header: dict[str, Any], claims: dict[str, Any], key: Any, alg: str = "ES256") -> str:
    return jws.serialize_compact(header, json.dumps(claims).encode(), key, algorithms=[alg])


@pytest.fixture(scope="module")
def key() -> ProofKey:
    return ProofKey.generate("ES256")


def claims(**changes: Any) -> dict[str, Any]:
    base = {"jti": "j1", "htm": "POST", "htu": URL, "iat": NOW}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def by_hand(key: ProofKey, header: dict[str, Any] | None = None, **changes: Any) -> str:
    """A proof built member by member, signed ES256 with ``key``'s private half whatever its header says."""
    fields = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}
    fields.update(header or {})
    members = {name: value for name, value in fields.items() if value is not None}
    signing_input = f"{b64(json.dumps(members).encode())}.{b64(json.dumps(claims(**changes)).encode())}"
    private = key._key.private_key
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    der = private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


@pytest.mark.parametrize("alg", ["ES256", "ES384", "ES512", "Ed25519", "PS256", "RS256"])
def test_a_proof_made_by_a_key_is_accepted_and_names_the_keys_thumbprint(alg: str) -> None:
    key = ProofKey.generate(alg)
    proof = key.proof("POST", URL + "?ignored=1#too", access_token="token", body=BODY, now=NOW)
    checked = check(proof, access_token="token", body=BODY, require_content_digest=True)
    assert checked.jkt == key.jkt == thumbprint(key.public_jwk)
    assert checked.iat == NOW
    assert checked.jti


def test_the_thumbprint_is_rfc_7638s_example() -> None:
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRX"
        "jBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8"
        "KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xB"
        "niIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ath_and_content_digest_are_the_rfcs_encodings() -> None:
    # RFC 9449 section 7.1's example token and ath; RFC 9530's digest of {"hello": "world"}.
    assert (
        access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU")
        == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    )
    assert content_digest(b'{"hello": "world"}') == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("HTTPS://MCP.Example.COM:443/mcp", "https://mcp.example.com/mcp"),
        ("https://mcp.example.com/mcp?a=1#b", "https://mcp.example.com/mcp"),
        ("http://127.0.0.1:80", "http://127.0.0.1/"),
        ("http://[::1]:8000/m%7ecp/%2f", "http://[::1]:8000/m~cp/%2F"),
    ],
)
def test_htu_is_compared_after_rfc_3986_normalization(given: str, canonical: str) -> None:
    assert normalize_htu(given) == canonical


@pytest.mark.parametrize("url", ["ftp://example.com/", "/mcp", "https://example.com:99999/", "not a url"])
def test_htu_that_is_no_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011  each of these is a ValueError with its own text
        normalize_htu(url)


@pytest.mark.parametrize(
    ("header", "changes", "reason"),
    [
        ({"typ": "JWT"}, {}, "typ"),
        ({"typ": None}, {}, "typ"),
        ({"jwk": None}, {}, "jwk"),
        ({"crit": ["x"]}, {}, "crit"),
        ({}, {"jti": None}, "jti"),
        ({}, {"jti": ""}, "jti"),
        ({}, {"jti": "x" * 257}, "jti"),
        ({}, {"htm": None}, "htm"),
        ({}, {"htm": "post"}, "htm"),
        ({}, {"htm": "GET"}, "htm"),
        ({}, {"htu": None}, "htu"),
        ({}, {"htu": "https://other.example.com/mcp"}, "htu"),
        ({}, {"htu": "https://mcp.example.com/mcp/other"}, "htu"),
        ({}, {"htu": 7}, "htu"),
        ({}, {"iat": None}, "iat"),
        ({}, {"iat": str(NOW)}, "iat"),
        ({}, {"iat": True}, "iat"),
        ({}, {"iat": NOW - 301}, "iat"),
        ({}, {"iat": NOW + 61}, "iat"),
        ({}, {"nonce": 5}, "nonce"),
    ],
)
def test_each_claim_and_header_member_is_checked(
    key: ProofKey, header: dict[str, Any], changes: dict[str, Any], reason: str
) -> None:
    check(by_hand(key))  # the proof made by hand passes when nothing is changed
    with pytest.raises(InvalidDPoPProof, match=reason):
        check(by_hand(key, header, **changes))


def test_ath_must_hash_the_token_it_comes_with(key: ProofKey) -> None:
    proof = key.proof("POST", URL, access_token="token", now=NOW)
    check(proof, access_token="token")
    with pytest.raises(InvalidDPoPProof, match="ath"):
        check(proof, access_token="another token")
    with pytest.raises(InvalidDPoPProof, match="ath"):
        check(key.proof("POST", URL, now=NOW), access_token="token")


def test_content_digest_binds_the_proof_to_the_body(key: ProofKey) -> None:
    proof = key.proof("POST", URL, body=BODY, now=NOW)
    check(proof, body=BODY, require_content_digest=True)
    with pytest.raises(InvalidDPoPProof, match="content_digest"):
        check(proof, body=BODY.replace(b"whoami", b"delete_everything"))
    without = key.proof("POST", URL, now=NOW)
    check(without, body=BODY)  # plain RFC 9449 clients are accepted unless the digest is required
    with pytest.raises(InvalidDPoPProof, match="content_digest"):
        check(without, body=BODY, require_content_digest=True)
    with pytest.raises(InvalidDPoPProof, match="content_digest"):
        check(by_hand(key, content_digest=["sha-256=:x:"]), body=BODY)


def test_a_private_key_in_the_header_is_refused(key: ProofKey) -> None:
    private = key._key.as_dict(private=True)
    with pytest.raises(InvalidDPoPProof, match="private"):
        check(by_hand(key, {"jwk": private}))


def test_a_symmetric_key_or_mac_algorithm_is_refused(key: ProofKey) -> None:
    secret = OctKey.generate_key(256)
    proof = signed({"typ": "dpop+jwt", "alg": "HS256", "jwk": secret.as_dict()}, claims(), secret, "HS256")
    with pytest.raises(InvalidDPoPProof, match="allow-list"):
        check(proof)
    with pytest.raises(ConfigurationError):
        dpop_algorithms(["HS256"])
    with pytest.raises(ConfigurationError):
        dpop_algorithms(["none"])


def test_alg_none_is_refused(key: ProofKey) -> None:
    header = b64(json.dumps({"typ": "dpop+jwt", "alg": "none", "jwk": key.public_jwk}).encode())
    payload = b64(json.dumps(claims()).encode())
    with pytest.raises(InvalidDPoPProof):
        check(f"{header}.{payload}.")


def test_a_signature_by_another_key_is_refused(key: ProofKey) -> None:
    other = ECKey.import_key(ec.generate_private_key(ec.SECP256R1()))
    proof = signed({"typ": "dpop+jwt", "alg": "ES256", "jwk": key.public_jwk}, claims(), other)
    with pytest.raises(InvalidDPoPProof, match="signature"):
        check(proof)


def test_a_key_that_does_not_fit_the_algorithm_is_refused(key: ProofKey) -> None:
    proof = by_hand(key, {"alg": "ES384"})  # a P-256 key announced as ES384
    with pytest.raises(InvalidDPoPProof, match="ES384"):
        check(proof)


@pytest.mark.parametrize(
    "proof",
    [
        "",
        "a.b",
        "a.b.c.d.e",
        "!!!.???.***",
        "é.é.é",
        "x" * (MAX_PROOF_LENGTH + 1),
        b64(b"[" * 5000) + "." + b64(b"{}") + ".AA",
        b64(b'{"typ":"dpop+jwt","alg":"ES256","jwk":' + b'{"a":' * 3000 + b"1" + b"}" * 3001) + ".e30.AA",
    ],
)
def test_malformed_huge_or_nested_proofs_are_refused(proof: str) -> None:
    with pytest.raises(InvalidDPoPProof):
        check(proof)


def test_the_window_follows_the_clock() -> None:
    key = ProofKey.generate()
    proof = key.proof("POST", URL)
    check(proof, now=time.time())
    with pytest.raises(InvalidDPoPProof, match="iat"):
        check(proof, now=time.time() + 600)


def test_a_proof_key_refuses_what_cannot_sign_proofs() -> None:
    with pytest.raises(ConfigurationError):
        ProofKey.generate("HS256")
    with pytest.raises(ConfigurationError):
        ProofKey(ec.generate_private_key(ec.SECP256K1()))
    with pytest.raises(ConfigurationError):
        ProofKey(ec.generate_private_key(ec.SECP256R1()), alg="PS256")
