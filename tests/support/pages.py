"""A browser for the authorization server's pages in tests: cookies, forms read with html.parser, redirects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx2

from bastion.authserver import AuthorizationServer

from support.authserver import PASSWORDS, make_server, pkce_pair, serving


@dataclass
class Form:
    """One ``<form>``: where it posts, its fields, and its submit buttons."""

    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    checkboxes: dict[str, str] = field(default_factory=dict)
    buttons: list[tuple[str, str]] = field(default_factory=list)


#: Elements that stand on their own line (or box): their text is kept apart from the next.
BLOCKS = frozenset({"p", "div", "li", "dt", "dd", "h1", "h2", "h3", "section", "header", "footer", "main"})
BLOCKS |= {"ul", "dl", "form", "label", "summary", "details", "button", "span"}


class PageParser(HTMLParser):
    """Collects the forms of a page and its visible text."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[Form] = []
        self.text: list[str] = []
        self.title = ""
        self._in_title = False
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {name: value or "" for name, value in attrs}
        if tag in BLOCKS:
            self.text.append(" ")
        if tag == "form":
            self.forms.append(Form(action=a.get("action", ""), method=a.get("method", "get").lower()))
        elif tag == "input" and self.forms and "name" in a:
            if a.get("type") == "checkbox":
                self.forms[-1].checkboxes[a["name"]] = a.get("value", "on")
            else:
                self.forms[-1].fields[a["name"]] = a.get("value", "")
        elif tag == "button" and self.forms and "name" in a:
            self.forms[-1].buttons.append((a["name"], a.get("value", "")))
        elif tag == "title":
            self._in_title = True
        elif tag == "style":
            self._in_style = True

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCKS:
            self.text.append(" ")
        if tag == "title":
            self._in_title = False
        elif tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif not self._in_style:
            self.text.append(data)


def parse_page(html: str) -> PageParser:
    """The forms and text of ``html``."""
    parser = PageParser()
    parser.feed(html)
    return parser


def page_text(response: httpx2.Response) -> str:
    """The visible text of an HTML response, whitespace collapsed."""
    return " ".join("".join(parse_page(response.text).text).split())


def only_form(response: httpx2.Response) -> Form:
    """The one form of a page (besides the consent page's "Not you?" form)."""
    forms = [form for form in parse_page(response.text).forms if not form.action.endswith("/authorize/switch")]
    assert len(forms) == 1, response.text
    return forms[0]


def callback_query(response: httpx2.Response) -> dict[str, str]:
    """The parameters of a redirect back to the client (each one exactly once)."""
    assert response.status_code in (302, 303), (response.status_code, response.text)
    query = parse_qs(urlsplit(response.headers["location"]).query, keep_blank_values=True)
    assert all(len(values) == 1 for values in query.values()), query
    return {name: values[0] for name, values in query.items()}


class Browser:
    """One browser (one cookie jar) talking to the authorization server at ``base``."""

    def __init__(self, http: httpx2.AsyncClient, base: str) -> None:
        self.http = http
        self.base = base

    async def authorize(self, **params: Any) -> httpx2.Response:
        """GET /authorize with ``params`` (a list value repeats the parameter); no redirect followed."""
        pairs: list[tuple[str, str]] = []
        for name, value in params.items():
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    pairs.append((name, str(item)))
        return await self.http.get(self.base + "/authorize?" + urlencode(pairs))

    async def submit(self, response: httpx2.Response, form: Form | None = None, **values: str) -> httpx2.Response:
        """Post ``form`` (default: the page's one form) with ``values`` overriding its fields."""
        form = form or only_form(response)
        data = {**form.fields, **values}
        target = urljoin(str(response.url), form.action)
        return await self.http.post(target, data={k: v for k, v in data.items() if v is not None})

    async def follow(self, response: httpx2.Response) -> httpx2.Response:
        """Follow a redirect inside the authorization server."""
        assert response.status_code in (302, 303), response.status_code
        return await self.http.get(urljoin(str(response.url), response.headers["location"]))

    async def sign_in(self, response: httpx2.Response, user: str = "alice") -> httpx2.Response:
        """Fill the login page; follows the redirect to the consent page when there is one."""
        answer = await self.submit(response, username=user, password=PASSWORDS[user])
        if answer.status_code == 303 and answer.headers["location"].startswith(self.base):
            return await self.follow(answer)
        location = answer.headers.get("location", "")
        if answer.status_code == 303 and location.startswith("/"):
            return await self.follow(answer)
        return answer

    async def approve(self, consent: httpx2.Response, *, remember: bool = False) -> httpx2.Response:
        """Press Allow on the consent page."""
        if remember:
            return await self.submit(consent, decision="approve", remember="yes")
        return await self.submit(consent, decision="approve")


@asynccontextmanager
async def browsing(tmp_path: Path, **options: Any) -> AsyncIterator[tuple[Browser, AuthorizationServer]]:
    """A served ``make_server(tmp_path, **options)`` and a browser for it."""
    server = make_server(tmp_path, **options)
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            yield Browser(http, url), server


def request_params(redirect_uri: str | list[str] | None, **overrides: Any) -> dict[str, Any]:
    """A valid authorization request for the public client, with a fresh PKCE challenge."""
    _, challenge = pkce_pair()
    params: dict[str, Any] = {
        "response_type": "code",
        "client_id": "public-client",
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "xyz-state",
        "scope": "notes:read",
    }
    params.update(overrides)
    return params
