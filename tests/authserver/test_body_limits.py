"""A request body larger than an endpoint reads is 413 Content Too Large (RFC 9110 section 15.5.14), not 400.

The OAuth endpoints answer with an RFC 6749 error body (``invalid_request``); the
browser forms with an error page. Declared (``Content-Length``) and streamed
(chunked) bodies alike, over real HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest

from bastion.authserver._forms import MAX_BODY

from support.authserver import make_server, serving
from support.fake_upstream import fake_upstream, proxy_of

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
#: A form body just past the limit: one long parameter.
HUGE = b"token=" + b"a" * MAX_BODY

JSON_ENDPOINTS = ["/token", "/revoke", "/introspect"]
PAGES = ["/authorize", "/authorize/login", "/authorize/consent", "/consents/withdraw", "/consents/sign-out"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = make_server(Path(tmp_path_factory.mktemp("limits")))
    with serving(server) as url:
        yield url


async def streamed() -> AsyncIterator[bytes]:
    for start in range(0, len(HUGE), 4096):
        yield HUGE[start : start + 4096]


def assert_too_large(response: httpx2.Response) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {"error": "invalid_request", "error_description": "the request body is too large"}


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
async def test_oauth_endpoints_answer_413_with_an_oauth_error(base: str, path: str) -> None:
    async with httpx2.AsyncClient() as http:
        assert_too_large(await http.post(base + path, content=HUGE, headers=FORM))
        assert_too_large(await http.post(base + path, content=streamed(), headers=FORM))
        # Within the limit the same endpoint reads the form and answers about its content.
        small = await http.post(base + path, content=b"token=abc", headers=FORM)
        assert small.status_code in (400, 401)


async def test_registration_answers_413_for_a_json_body_past_its_limit(base: str) -> None:
    body = b'{"redirect_uris": ["http://127.0.0.1/cb"], "client_name": "' + b"n" * 20_000 + b'"}'
    async with httpx2.AsyncClient() as http:
        answer = await http.post(base + "/register", content=body, headers={"Content-Type": "application/json"})
    assert_too_large(answer)


@pytest.mark.parametrize("path", PAGES)
async def test_browser_forms_answer_413_with_a_page(base: str, path: str) -> None:
    async with httpx2.AsyncClient() as http:
        for content in (HUGE, streamed()):
            answer = await http.post(base + path, content=content, headers=FORM)
            assert answer.status_code == 413, (path, answer.status_code, answer.text[:200])
            assert answer.headers["content-type"].startswith("text/html")
            assert "too large" in answer.text


async def test_the_proxy_consent_form_answers_413_with_a_page(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            answer = await http.post(base + "/auth/continue", content=HUGE, headers=FORM)
    assert answer.status_code == 413
    assert "too large" in answer.text
