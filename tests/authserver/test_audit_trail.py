"""The audit trail of a whole OAuth flow, in order and field by field, and never a secret in it.

One user registers a client (RFC 7591), fails to sign in and is throttled under another
name, signs in, consents, and the client redeems its code, refreshes (once replayed
within the rule, once reused), introspects, revokes, and replays a code. Every event
the authorization server emitted is collected by a sink and compared with the
expected sequence; then every secret the flow produced is looked for in the events and
in the log records of the ``bastion`` loggers.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bastion import AuditEvent
from bastion.authserver import AuthorizationServer, PasswordLogin, Registration, SafeFetcher

from support.authserver import (
    CONFIDENTIAL_SECRET,
    PASSWORDS,
    REDIRECT,
    basic_auth,
    check_user,
    clocked_server,
    code_tokens,
    pkce_pair,
    serving,
)
from support.clock import FakeClock
from support.pages import Browser, callback_query, only_form
from support.tls import self_signed, serve_https

WEB = "https://app.example.com/callback"
#: The wrong passwords typed in the flow: secrets as much as the right one.
GUESSES = ("guess-number-one", "guess-number-two", "guess-number-three")


@dataclass
class Trail:
    """The flow's events, and every secret value it produced."""

    server: AuthorizationServer
    clock: FakeClock
    browser: Browser
    events: list[AuditEvent] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    #: For each request of the flow, the number of events it emitted.
    requests: list[int] = field(default_factory=list)

    def keep(self, *values: Any) -> None:
        self.secrets.update(v for v in values if isinstance(v, str) and v)

    async def request(self, send: Any) -> httpx2.Response:
        """One request of the flow; counts the events it emitted."""
        before = len(self.events)
        response: httpx2.Response = await send
        self.requests.append(len(self.events) - before)
        self.keep(*self.browser.http.cookies.values())
        return response


@pytest.fixture(name="trail")
async def trail_fixture(tmp_path: Path) -> AsyncIterator[Trail]:
    clock = FakeClock()
    server = clocked_server(tmp_path, clock, users=None, login=PasswordLogin(check_user, max_attempts=2))
    events: list[AuditEvent] = []
    server.audit.add_sink(events.append)
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            trail = Trail(server, clock, Browser(http, url), events)
            trail.keep(*PASSWORDS.values(), *GUESSES)
            yield trail


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


async def authorize(t: Trail, client_id: str) -> tuple[httpx2.Response, str]:
    """GET /authorize for ``client_id`` with a fresh PKCE pair; the response and the verifier."""
    verifier, challenge = pkce_pair()
    t.keep(verifier)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": WEB,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "state": "state-1",
        "scope": "notes:read",
    }
    return await t.request(t.browser.authorize(**params)), verifier


def code_of(t: Trail, response: httpx2.Response) -> str:
    code = callback_query(response)["code"]
    t.keep(code)
    return code


async def redeem(t: Trail, auth: dict[str, str], code: str, verifier: str, **headers: str) -> httpx2.Response:
    data = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier, "redirect_uri": WEB}
    response = await t.request(t.browser.http.post(t.browser.base + "/token", data=data, headers={**auth, **headers}))
    if response.status_code == 200:
        body = response.json()
        t.keep(body["access_token"], body.get("refresh_token"))
    return response


async def refresh(t: Trail, auth: dict[str, str], token: str) -> httpx2.Response:
    data = {"grant_type": "refresh_token", "refresh_token": token}
    response = await t.request(t.browser.http.post(t.browser.base + "/token", data=data, headers=auth))
    if response.status_code == 200:
        body = response.json()
        t.keep(body["access_token"], body.get("refresh_token"))
    return response


async def run_flow(t: Trail) -> dict[str, str]:
    """The whole flow; the client id and the grant ids it produced."""
    b = t.browser
    registered = await t.request(
        b.http.post(
            b.base + "/register",
            json={
                "client_name": "Audited App",
                "redirect_uris": [WEB],
                "grant_types": ["authorization_code", "refresh_token"],
            },
        )
    )
    assert registered.status_code == 201, registered.text
    client_id, secret = registered.json()["client_id"], registered.json()["client_secret"]
    t.keep(secret)
    auth = basic(client_id, secret)

    login, verifier = await authorize(t, client_id)
    assert "password" in only_form(login).fields
    t.keep(only_form(login).fields["csrf"], only_form(login).fields["flow"])
    page = login
    for guess, status in zip(GUESSES, (200, 200, 429), strict=True):
        page = await t.request(b.submit(page, username="mallory", password=guess))
        assert page.status_code == status
    signed_in = await t.request(b.submit(page, username="alice", password=PASSWORDS["alice"]))
    assert signed_in.status_code == 303
    consent = await t.request(b.follow(signed_in))
    code = code_of(t, await t.request(b.approve(consent, remember=True)))

    tokens = await redeem(t, auth, code, verifier, **{"X-Request-Id": "token-request-1"})
    assert tokens.status_code == 200, tokens.text
    first_refresh, access = tokens.json()["refresh_token"], tokens.json()["access_token"]
    rotated = await refresh(t, auth, first_refresh)
    assert rotated.status_code == 200
    retried = await refresh(t, auth, first_refresh)  # the answer was lost: the same successor again
    assert retried.json()["refresh_token"] == rotated.json()["refresh_token"]
    introspected = await t.request(b.http.post(b.base + "/introspect", data={"token": access}, headers=auth))
    assert introspected.json()["active"] is True
    assert (await refresh(t, auth, rotated.json()["refresh_token"])).status_code == 200
    reused = await refresh(t, auth, first_refresh)  # its successor was used: stolen, the family goes
    assert reused.json()["error"] == "invalid_grant"

    again, verifier = await authorize(t, client_id)  # signed in, consent remembered: a code at once
    second = await redeem(t, auth, code_of(t, again), verifier)
    revoked = await t.request(
        b.http.post(b.base + "/revoke", data={"token": second.json()["refresh_token"]}, headers=auth)
    )
    assert revoked.status_code == 200
    inactive = await t.request(
        b.http.post(b.base + "/introspect", data={"token": second.json()["access_token"]}, headers=auth)
    )
    assert inactive.json() == {"active": False}

    third, verifier = await authorize(t, client_id)
    code = code_of(t, third)
    assert (await redeem(t, auth, code, verifier)).status_code == 200
    replayed = await redeem(t, auth, code, verifier)
    assert replayed.json()["error"] == "invalid_grant"

    grants = [e.grant_id for e in t.events if e.name == "code.issued"]
    assert len(grants) == 3
    assert all(grants)
    return {"client": client_id, "g1": str(grants[0]), "g2": str(grants[1]), "g3": str(grants[2])}


Expected = tuple[str, str, str | None, str | None, str | None, dict[str, Any]]


def expected(ids: dict[str, str], resource: str) -> list[Expected]:
    """``(name, outcome, subject, client_id, grant_id, facts)`` of every event, in order."""
    c, g1, g2, g3 = ids["client"], ids["g1"], ids["g2"], ids["g3"]
    scopes = ["notes:read"]
    password = {"method": "password"}
    code = {"scopes": scopes, "resource": resource}
    issued = {"scopes": scopes, "resource": resource}
    return [
        ("client.registered", "success", None, c, None, {"method": "dcr"}),
        ("signin.failed", "failure", None, c, None, {**password, "reason": "wrong credentials"}),
        ("signin.failed", "failure", None, c, None, {**password, "reason": "wrong credentials"}),
        ("signin.throttled", "refused", None, c, None, {**password, "reason": "too many attempts"}),
        ("signin.succeeded", "success", "alice", c, None, password),
        ("consent.given", "success", "alice", c, None, {**code, "remember": 1}),
        ("code.issued", "success", "alice", c, g1, code),
        ("code.redeemed", "success", "alice", c, g1, code),
        ("token.issued", "success", "alice", c, g1, {"grant_type": "authorization_code", **issued}),
        ("refresh.rotated", "success", "alice", c, g1, issued),
        ("token.issued", "success", "alice", c, g1, {"grant_type": "refresh_token", **issued}),
        ("refresh.replayed", "success", "alice", c, g1, {"reason": "a retry before the successor was used"}),
        ("token.issued", "success", "alice", c, g1, {"grant_type": "refresh_token", "scopes": scopes}),
        ("token.introspected", "success", "alice", c, g1, {"reason": "active"}),
        ("refresh.rotated", "success", "alice", c, g1, issued),
        ("token.issued", "success", "alice", c, g1, {"grant_type": "refresh_token", **issued}),
        (
            "refresh.reuse_detected",
            "refused",
            "alice",
            c,
            g1,
            {"reason": "presented again after its successor was used"},
        ),
        ("grant.revoked", "success", "alice", c, g1, {"reason": "refresh token reuse"}),
        ("token.refused", "failure", None, c, None, {"grant_type": "refresh_token", "reason": "invalid_grant"}),
        ("consent.remembered", "success", "alice", c, None, code),
        ("code.issued", "success", "alice", c, g2, code),
        ("code.redeemed", "success", "alice", c, g2, code),
        ("token.issued", "success", "alice", c, g2, {"grant_type": "authorization_code", **issued}),
        ("grant.revoked", "success", "alice", c, g2, {"reason": "revocation endpoint"}),
        ("token.introspected", "failure", None, c, None, {"reason": "not active"}),
        ("consent.remembered", "success", "alice", c, None, code),
        ("code.issued", "success", "alice", c, g3, code),
        ("code.redeemed", "success", "alice", c, g3, code),
        ("token.issued", "success", "alice", c, g3, {"grant_type": "authorization_code", **issued}),
        ("code.replayed", "refused", "alice", c, g3, {"reason": "a used code was presented again"}),
        ("grant.revoked", "success", "alice", c, g3, {"reason": "authorization code replay"}),
        ("token.refused", "failure", None, c, None, {"grant_type": "authorization_code", "reason": "invalid_grant"}),
    ]


async def test_the_events_of_a_whole_flow_in_order_field_by_field(trail: Trail) -> None:
    ids = await run_flow(trail)
    resource = trail.server.resources[0]
    got = [(e.name, e.outcome, e.subject, e.client_id, e.grant_id, dict(e.facts)) for e in trail.events]
    assert got == expected(ids, resource)
    assert {e.address for e in trail.events} == {"127.0.0.1"}
    assert {e.time for e in trail.events} == {trail.server.clock()}  # the server's clock

    # Each request's events share one request id, and no two requests share one.
    ids_by_request: list[str | None] = []
    position = 0
    for count in trail.requests:
        request_ids = {e.request_id for e in trail.events[position : position + count]}
        assert len(request_ids) <= 1
        ids_by_request.extend(request_ids)
        position += count
    assert position == len(trail.events)
    assert None not in ids_by_request
    assert len(set(ids_by_request)) == len(ids_by_request)
    # A request that names itself is named so (X-Request-Id).
    redeemed = next(e for e in trail.events if e.name == "code.redeemed")
    assert redeemed.request_id == "token-request-1"


async def test_no_token_code_secret_or_password_appears_in_any_event_or_log_record(
    trail: Trail, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="bastion"):
        await run_flow(trail)
    records = [r for r in caplog.records if r.name == "bastion" or r.name.startswith("bastion.")]
    assert any(r.name == "bastion.audit" for r in records)  # the JSON lines are there
    texts = [e.to_json() for e in trail.events] + [r.getMessage() for r in records]
    texts += [json.dumps(e.to_dict()) for e in trail.events]
    assert len(trail.secrets) > 20
    for secret in trail.secrets:
        assert len(secret) >= 8
        leaks = [text for text in texts if secret in text]
        assert not leaks, f"a secret appears in {leaks[0][:200]}"


async def test_the_audit_logger_writes_each_event_as_one_json_line(
    trail: Trail, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bastion.audit"):
        await run_flow(trail)
    lines = [r.getMessage() for r in caplog.records if r.name == "bastion.audit"]
    assert [json.loads(line) for line in lines] == [e.to_dict() for e in trail.events]
    assert all("\n" not in line for line in lines)


# -- the other decisions, one at a time ------------------------------------------------------------------


def facts(events: list[AuditEvent]) -> list[tuple[str, str, str | None, str | None, dict[str, Any]]]:
    return [(e.name, e.outcome, e.subject, e.client_id, dict(e.facts)) for e in events]


async def test_refused_registrations_name_a_fixed_reason(tmp_path: Path) -> None:
    events: list[AuditEvent] = []
    server = clocked_server(tmp_path, FakeClock(), registration=Registration(rate_limit=2))
    server.audit.add_sink(events.append)
    bad = {"client_name": "Bad", "redirect_uris": ["http://evil.example/<script>"]}
    good = {"client_name": "Good", "redirect_uris": [WEB]}
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            assert (await http.post(url + "/register", json=bad)).status_code == 400
            assert (
                await http.post(url + "/register", content=b"{", headers={"content-type": "application/json"})
            ).status_code == 400
            assert (await http.post(url + "/register", json=good)).status_code == 429
    closed = clocked_server(tmp_path / "closed", FakeClock(), registration=Registration(dynamic=False))
    closed.audit.add_sink(events.append)
    with serving(closed) as url:
        async with httpx2.AsyncClient() as http:
            assert (await http.post(url + "/register", json=good)).status_code == 403
    assert facts(events) == [
        ("client.refused", "failure", None, None, {"method": "dcr", "reason": "invalid_redirect_uri"}),
        ("client.refused", "failure", None, None, {"method": "dcr", "reason": "invalid_request"}),
        (
            "client.refused",
            "refused",
            None,
            None,
            {"method": "dcr", "reason": "too many registrations from this address"},
        ),
        ("client.refused", "refused", None, None, {"method": "dcr", "reason": "registration is disabled"}),
    ]
    assert all("evil" not in e.to_json() for e in events)  # nothing the request sent is repeated


async def test_denied_and_withdrawn_consent(tmp_path: Path) -> None:
    events: list[AuditEvent] = []
    server = clocked_server(tmp_path, FakeClock())
    server.audit.add_sink(events.append)
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            b = Browser(http, url)
            params = {
                "response_type": "code",
                "client_id": "public-client",
                "redirect_uri": REDIRECT,
                "code_challenge": pkce_pair()[1],
                "code_challenge_method": "S256",
                "scope": "notes:read",
            }
            consent = await b.sign_in(await b.authorize(**params))
            denied = await b.submit(consent, decision="deny")
            assert callback_query(denied)["error"] == "access_denied"
            consent = await b.authorize(**{**params, "code_challenge": pkce_pair()[1]})
            assert "code" in callback_query(await b.approve(consent, remember=True))
    del events[:1]  # signin.succeeded
    assert await server.withdraw_consent("alice", "public-client")
    resource = server.resources[0]
    flow = {"scopes": ["notes:read"], "resource": resource}
    grant = next(e.grant_id for e in events if e.name == "code.issued")
    assert facts(events) == [
        ("consent.denied", "refused", "alice", "public-client", flow),
        ("consent.given", "success", "alice", "public-client", {**flow, "remember": 1}),
        ("code.issued", "success", "alice", "public-client", flow),
        ("grant.revoked", "success", "alice", "public-client", {"reason": "access withdrawn"}),
        ("consent.withdrawn", "success", "alice", "public-client", {"count": 1}),
    ]
    assert events[3].grant_id == grant
    assert events[4].address is None  # withdrawn in code, outside any request


async def test_introspection_of_another_clients_token_is_refused(tmp_path: Path) -> None:
    events: list[AuditEvent] = []
    server = clocked_server(tmp_path, FakeClock())
    server.audit.add_sink(events.append)
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            tokens = await code_tokens(server, http, url)  # the public client's
            del events[:]
            answer = await http.post(
                url + "/introspect",
                data={"token": tokens["access_token"]},
                headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
            )
            revoked = await http.post(
                url + "/revoke",
                data={"token": tokens["refresh_token"]},
                headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
            )
    assert answer.json() == {"active": False}
    assert revoked.status_code == 200
    assert facts(events) == [
        ("token.introspected", "refused", None, "confidential-client", {"reason": "another client's token"}),
        ("grant.revoked", "refused", None, "confidential-client", {"reason": "another client's token"}),
    ]


async def test_a_refused_client_authentication_names_no_client(tmp_path: Path) -> None:
    events: list[AuditEvent] = []
    server = clocked_server(tmp_path, FakeClock())
    server.audit.add_sink(events.append)
    with serving(server) as url:
        async with httpx2.AsyncClient() as http:
            wrong = await http.post(
                url + "/token",
                data={"grant_type": "client_credentials"},
                headers=basic_auth("confidential-client", "not-the-secret-at-all"),
            )
            unknown = await http.post(url + "/token", data={"grant_type": "password", "username": "alice"})
            issued = await http.post(
                url + "/token",
                data={"grant_type": "client_credentials", "scope": "notes:read"},
                headers=basic_auth("confidential-client", CONFIDENTIAL_SECRET),
            )
    assert wrong.status_code == 401
    assert unknown.status_code == 400
    assert issued.status_code == 200
    assert facts(events) == [
        ("token.refused", "failure", None, None, {"grant_type": "client_credentials", "reason": "invalid_client"}),
        ("token.refused", "failure", None, None, {"reason": "unsupported_grant_type"}),
        (
            "token.issued",
            "success",
            "confidential-client",
            "confidential-client",
            {"grant_type": "client_credentials", "scopes": ["notes:read"], "resource": server.resources[0]},
        ),
    ]
    assert "not-the-secret-at-all" not in "".join(e.to_json() for e in events)


async def test_a_fetched_and_a_refused_metadata_document(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    documents: dict[str, Any] = {}

    async def serve_document(request: Request) -> Response:
        if request.url.path not in documents:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(documents[request.url.path])

    events: list[AuditEvent] = []
    fetcher = SafeFetcher(allow_private=True, verify=tls.context, timeout=5.0)
    server = clocked_server(tmp_path, FakeClock(), registration=Registration(fetcher=fetcher))
    server.audit.add_sink(events.append)
    with serve_https(Starlette(routes=[Route("/{path:path}", serve_document)]), tls) as host, serving(server) as url:
        good, invalid, missing = host + "/good.json", host + "/invalid.json", host + "/missing.json"
        documents["/good.json"] = {"client_id": good, "client_name": "Hosted", "redirect_uris": [WEB]}
        documents["/invalid.json"] = {"client_id": good, "client_name": "Wrong id", "redirect_uris": [WEB]}
        async with httpx2.AsyncClient() as http:
            b = Browser(http, url)
            for client_id in (good, invalid, missing, good):
                params = {
                    "response_type": "code",
                    "client_id": client_id,
                    "redirect_uri": WEB,
                    "code_challenge": pkce_pair()[1],
                    "code_challenge_method": "S256",
                }
                await b.authorize(**params)
    assert facts(events) == [
        ("client.fetched", "success", None, good, {"method": "cimd"}),
        (
            "client.refused",
            "failure",
            None,
            invalid,
            {"method": "cimd", "reason": "the client metadata document is not valid"},
        ),
        (
            "client.refused",
            "error",
            None,
            missing,
            {"method": "cimd", "reason": "the client metadata document could not be fetched"},
        ),
    ]  # the second authorization of the good client finds its document cached: no event


async def test_kept_events_are_queried_by_user_client_and_time(trail: Trail) -> None:
    kept = trail.server.keep_audit(retention=3600)
    ids = await run_flow(trail)
    everything = await kept.query()
    assert [e.to_dict() for e in everything] == [e.to_dict() for e in trail.events]
    assert await kept.query(user="alice") == [e for e in trail.events if e.subject == "alice"]
    assert await kept.query(client=ids["client"]) == trail.events  # every event of the flow names the client
    assert await kept.query(user="alice", client="another") == []
    assert await kept.query(since=trail.server.clock() + 1) == []
    trail.clock.advance(3601)
    assert await kept.query() == []  # past the retention, the store forgot them
