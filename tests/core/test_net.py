"""The one loopback definition: ``localhost``, ``127.0.0.0/8`` and ``::1``, nothing that merely looks like them."""

from __future__ import annotations

import pytest

from bastion._core.errors import ConfigurationError
from bastion._core.net import is_loopback_host, is_loopback_url
from bastion._jose.jwks import JWKSCache
from bastion.providers._checks import server_url

HOSTS = [
    ("localhost", True),
    ("LocalHost", True),
    ("127.0.0.1", True),
    ("127.0.0.2", True),
    ("127.255.255.254", True),
    ("::1", True),
    ("[::1]", True),
    ("[0:0:0:0:0:0:0:1]", True),
    ("127.evil.example", False),
    ("localhost.evil.example", False),
    ("evil-localhost", False),
    ("127.999.0.1", False),
    ("127.1", False),
    ("0177.0.0.1", False),
    ("::ffff:127.0.0.1", False),
    ("[::ffff:127.0.0.1]", False),
    ("[127.0.0.1]", False),
    ("[localhost]", False),
    ("128.0.0.1", False),
    ("10.0.0.1", False),
    ("0.0.0.0", False),
    ("::", False),
    ("", False),
]


@pytest.mark.parametrize(("host", "loopback"), HOSTS)
def test_is_loopback_host(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://localhost/cb", True),
        ("http://localhost:8080/cb", True),
        ("http://127.0.0.1:8080", True),
        ("https://127.3.4.5/x", True),
        ("http://[::1]:8080/x", True),
        ("http://user:pw@127.0.0.1/x", True),
        ("http://127.evil.example/x", False),
        ("http://127.0.0.1.evil.example/x", False),
        ("http://evil.example/?next=http://127.0.0.1", False),
        ("http://evil.example#@127.0.0.1", False),
        ("http://[::ffff:127.0.0.1]/x", False),
        ("http://127.999.0.1/x", False),
        ("http://[::1/x", False),
        ("/relative/path", False),
        ("", False),
    ],
)
def test_is_loopback_url(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback


def test_a_plain_http_key_set_on_a_name_like_a_loopback_address_warns(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="bastion"):
        JWKSCache("http://127.0.0.7:8080/jwks")
        assert not caplog.records
        JWKSCache("http://127.999.0.1:8080/jwks")
    assert "plain http" in caplog.text


def test_provider_urls_allow_plain_http_on_every_loopback_address_only() -> None:
    assert server_url("http://127.0.0.2:8080/realms/x/", "base_url") == "http://127.0.0.2:8080/realms/x"
    assert server_url("http://[::1]:8080", "base_url") == "http://[::1]:8080"
    with pytest.raises(ConfigurationError):
        server_url("http://127.evil.example", "base_url")
