"""Redirect URI rules: what may be registered, and exact matching with loopback port freedom."""

from __future__ import annotations

import pytest

from bastion.authserver import Client, InvalidRedirectURI, InvalidRequest
from bastion.authserver._redirects import (
    MAX_REDIRECT_URI,
    is_loopback_redirect,
    redirect_uri_matches,
    select_redirect_uri,
    validate_redirect_uri,
)

ACCEPTED = [
    "https://app.example.com/callback",
    "https://app.example.com/callback?tenant=1",
    "https://app.example.com:8443/callback",
    "https://app.example.com",
    "https://192.0.2.10/cb",
    "https://[2001:db8::1]/cb",
    "http://127.0.0.1/callback",
    "http://127.0.0.1:33418/callback",
    "http://[::1]/callback",
    "http://[::1]:8080/callback",
    "http://localhost:3000/oauth/callback",
    "https://app.example.com/cb%20x",
]

REFUSED = [
    ("", "non-empty"),
    ("/callback", "absolute"),
    ("callback", "absolute"),
    ("//app.example.com/cb", "absolute"),
    ("com.example.app:/callback", "absolute"),
    ("myapp://callback", "https"),
    ("ftp://app.example.com/cb", "https"),
    ("javascript:alert(1)", "absolute"),
    ("HTTPS://app.example.com/cb", "absolute"),
    ("http://app.example.com/callback", "loopback"),
    ("http://10.0.0.1/callback", "loopback"),
    ("http://127.0.0.2/callback", "loopback"),
    ("https://app.example.com/cb#", "fragment"),
    ("https://app.example.com/cb#section", "fragment"),
    ("https://user@app.example.com/cb", "user name"),
    ("https://user:pw@app.example.com/cb", "user name"),
    ("https://app.example.com@evil.example/cb", "user name"),
    ("https://*.example.com/cb", "wildcard"),
    ("https://app.example.com/*", "wildcard"),
    ("https://app.example.com/c b", "printable ASCII"),
    ("https://app.example.com/caf\u00e9", "printable ASCII"),
    ("https://app.example.com/cb\n", "printable ASCII"),
    ("https://app.example.com\\@evil.example/", "printable ASCII"),
    ("https://app.example.com/<script>", "printable ASCII"),
    ("https://app.example.com/%zz", "printable ASCII"),
    ("https:///callback", "valid host"),
    ("https://", "valid host"),
    ("https://-bad-.example/cb", "valid host"),
    ("https://a_b.example/cb", "valid host"),
    ("https://[::1/cb", "valid host"),
    ("https://app.example.com:/cb", "port"),
    ("https://app.example.com:0/cb", "port"),
    ("https://app.example.com:65536/cb", "port"),
    ("https://app.example.com:80x/cb", "port"),
    ("https://app.example.com/" + "a" * MAX_REDIRECT_URI, "at most"),
]


@pytest.mark.parametrize("uri", ACCEPTED)
def test_https_and_loopback_http_redirects_are_accepted(uri: str) -> None:
    assert validate_redirect_uri(uri) == uri


@pytest.mark.parametrize(("uri", "reason"), REFUSED)
def test_refused_redirects_say_why(uri: str, reason: str) -> None:
    with pytest.raises(InvalidRedirectURI) as caught:
        validate_redirect_uri(uri)
    assert reason in caught.value.description
    assert caught.value.error == "invalid_redirect_uri"


def test_a_non_string_is_refused() -> None:
    with pytest.raises(InvalidRedirectURI):
        validate_redirect_uri(None)  # type: ignore[arg-type]


def test_longest_accepted_length() -> None:
    base = "https://app.example.com/"
    uri = base + "a" * (MAX_REDIRECT_URI - len(base))
    assert validate_redirect_uri(uri) == uri
    with pytest.raises(InvalidRedirectURI):
        validate_redirect_uri(uri + "a")


@pytest.mark.parametrize(
    ("uri", "loopback"),
    [
        ("http://127.0.0.1/cb", True),
        ("http://127.0.0.1:9000/cb", True),
        ("http://[::1]:9000/cb", True),
        ("http://localhost/cb", True),
        ("https://localhost/cb", False),
        ("https://app.example.com/cb", False),
        ("http://app.example.com/cb", False),
        ("http://127.0.0.1/cb#x", False),
        ("not a uri", False),
    ],
)
def test_is_loopback_redirect(uri: str, loopback: bool) -> None:
    assert is_loopback_redirect(uri) is loopback


WEB = "https://app.example.com/callback"
LOOPBACK = "http://127.0.0.1/callback"


@pytest.mark.parametrize(
    ("registered", "requested", "matches"),
    [
        (WEB, WEB, True),
        (WEB, WEB + "/", False),
        (WEB + "/", WEB, False),
        (WEB, "https://APP.example.com/callback", False),
        (WEB, "https://app.example.com/Callback", False),
        (WEB, WEB + "?extra=1", False),
        (WEB + "?a=1&b=2", WEB + "?b=2&a=1", False),
        (WEB + "?a=1", WEB + "?a=1", True),
        (WEB, "https://user@app.example.com/callback", False),
        (WEB, WEB + "#fragment", False),
        (WEB, "https://app.example.com:443/callback", False),
        (WEB, "https://app.example.com:8443/callback", False),
        ("https://app.example.com:8443/callback", "https://app.example.com:9443/callback", False),
        (WEB, "http://app.example.com/callback", False),
        (WEB, "https://app.example.com/callback/../callback", False),
        (WEB, "https://app.example.com.evil.example/callback", False),
        # RFC 8252 section 7.3: a loopback redirect may use any port.
        (LOOPBACK, "http://127.0.0.1:51004/callback", True),
        ("http://127.0.0.1:8000/callback", "http://127.0.0.1:9000/callback", True),
        ("http://127.0.0.1:8000/callback", LOOPBACK, True),
        ("http://[::1]/callback", "http://[::1]:51004/callback", True),
        ("http://localhost/callback", "http://localhost:3000/callback", True),
        # ... but everything else still matches exactly.
        (LOOPBACK, "http://localhost:51004/callback", False),
        (LOOPBACK, "http://[::1]:51004/callback", False),
        (LOOPBACK, "http://127.0.0.1:51004/callback/", False),
        (LOOPBACK, "http://127.0.0.1:51004/other", False),
        (LOOPBACK, "http://127.0.0.1:51004/callback?x=1", False),
        (LOOPBACK, "http://127.0.0.1:51004/callback#x", False),
        (LOOPBACK, "http://user@127.0.0.1:51004/callback", False),
        (LOOPBACK, "https://127.0.0.1:51004/callback", False),
        ("http://localhost/callback", "http://LOCALHOST:3000/callback", False),
        ("https://localhost/callback", "https://localhost:3000/callback", False),
    ],
)
def test_redirect_uri_matching(registered: str, requested: str, matches: bool) -> None:
    assert redirect_uri_matches([registered], requested) is matches


def test_matching_against_several_registered_uris() -> None:
    registered = ["https://a.example/cb", "http://127.0.0.1/cb"]
    assert redirect_uri_matches(registered, "https://a.example/cb")
    assert redirect_uri_matches(registered, "http://127.0.0.1:4000/cb")
    assert not redirect_uri_matches(registered, "https://b.example/cb")
    assert not redirect_uri_matches([], "https://a.example/cb")


def test_select_without_redirect_uri_takes_the_only_one() -> None:
    client = Client("c", redirect_uris=(WEB,))
    assert select_redirect_uri(client, None) == WEB


def test_select_without_redirect_uri_needs_a_single_registered_one() -> None:
    with pytest.raises(InvalidRequest, match="several"):
        select_redirect_uri(Client("c", redirect_uris=(WEB, LOOPBACK)), None)
    with pytest.raises(InvalidRequest, match="no registered"):
        select_redirect_uri(Client("c", grant_types=("client_credentials",)), None)


def test_select_returns_the_requested_loopback_uri_with_its_port() -> None:
    client = Client("c", redirect_uris=(LOOPBACK,))
    assert select_redirect_uri(client, "http://127.0.0.1:40123/callback") == "http://127.0.0.1:40123/callback"


def test_select_refuses_an_unregistered_uri() -> None:
    client = Client("c", redirect_uris=(WEB,))
    with pytest.raises(InvalidRequest, match="not registered") as caught:
        select_redirect_uri(client, WEB + "/")
    assert caught.value.error == "invalid_request"
