"""The OAuth proxy's consent and state rules, each with a test that tries to break it.

Consent comes before any upstream redirect and is per client (confused deputy); the ``state`` sent
upstream is random, single use, bound to the browser that consented, and lives ten minutes; a
remembered consent is a signed cookie bound to its user and client, good only while the user's
remembered consent stands. The provider is the controllable fake (``fake_upstream``); one test runs
the remembered consent against the real OpenID provider.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx2

from bastion.authserver import Branding
from bastion.providers import OIDC
from bastion.proxy._login import CONSENT_COOKIE
from bastion.storage import SQLiteStore
from bastion.testing import serve

from support.authserver import PUBLIC_CLIENT, SCOPES
from support.clock import FakeClock
from support.fake_upstream import (
    OTHER_REDIRECT,
    Authorization,
    FakeUpstream,
    approve,
    consent_page,
    fake_upstream,
    free_port,
    proxy_of,
)
from support.oidc import OIDCProvider, sign_in, skip_without_node
from support.pages import only_form, page_text, parse_page


def query_of(response: httpx2.Response) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def goes_upstream(fake: FakeUpstream, response: httpx2.Response) -> bool:
    return response.status_code in (302, 303) and response.headers["location"].startswith(fake.base + "/authorize?")


# -- consent before the provider ------------------------------------------------------------------


async def test_the_consent_page_cannot_be_framed_and_offers_to_remember(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            consent = await consent_page(http, Authorization(base))
        assert consent.status_code == 200
        assert consent.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in consent.headers["content-security-policy"]
        assert consent.headers["cache-control"] == "no-store"
        assert "remember" in only_form(consent).checkboxes
        assert "Fake ID" in page_text(consent)


async def test_the_proxys_pages_carry_its_branding_and_offer_no_sign_in_of_their_own(tmp_path: Path) -> None:
    branding = Branding(service_name="Acme Notes", support_url="https://help.acme.example")
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db", branding=branding) as (_, base):
        async with httpx2.AsyncClient() as http:
            consent = await consent_page(http, Authorization(base))
            signed_out = await http.get(base + "/consents")
            account = await http.get(base + "/consents/sign-in")
    text = page_text(consent)
    assert "Acme Notes" in text
    assert "you will sign in with Fake ID next" in text
    assert "Not you?" not in text  # nobody is signed in yet: the provider says who
    assert '<a href="https://help.acme.example">' in consent.text
    # Signing in at the provider is for an authorization only: /consents says where to start.
    for response in (signed_out, account):
        assert response.status_code == 403
        assert "Sign in through an application that uses Acme Notes" in page_text(response)
        assert "/consents/sign-in" not in response.text


async def test_the_provider_is_not_reached_without_the_consent_post(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            consent = await consent_page(http, Authorization(base))
            fields = only_form(consent).fields
            # No CSRF token, a wrong one, or a GET instead of the form's POST.
            no_csrf = await http.post(base + "/auth/continue", data={"flow": fields["flow"], "decision": "approve"})
            assert no_csrf.status_code == 403
            wrong = await approve(http, base, consent, csrf="x" * 43)
            assert wrong.status_code == 403
            assert (await http.get(base + "/auth/continue?flow=" + fields["flow"])).status_code == 405
            # Straight to the callback with a state of one's own: nothing was sent upstream for it.
            forged = await http.get(base + "/auth/callback?code=c&state=" + fields["flow"])
            assert forged.status_code == 400
            # The flow is intact: the real answer still works.
            assert goes_upstream(fake, await approve(http, base, consent))
        assert fake.token_requests == 0


async def test_the_csrf_token_of_another_clients_flow_is_refused(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            mine = await consent_page(http, Authorization(base))
            other = Authorization(base, client_id="other-client", redirect_uri=OTHER_REDIRECT)
            theirs = await consent_page(http, other)
            # Client A's flow with client B's CSRF token (same browser): refused.
            crossed = await approve(http, base, mine, csrf=only_form(theirs).fields["csrf"])
            assert crossed.status_code == 403
            assert "security token" in page_text(crossed)


async def test_a_state_is_single_use_and_bound_to_the_browser(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http, httpx2.AsyncClient() as stranger:
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            callback = fake.sign_in(upstream.headers["location"])
            foreign = await stranger.get(callback)
            assert foreign.status_code == 403
            assert "not sent from the browser" in page_text(foreign)
            # The state was used up by that attempt: the right browser cannot use it either.
            assert (await http.get(callback)).status_code == 400
            # A fresh sign-in completes, once.
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            callback = fake.sign_in(upstream.headers["location"])
            done = await http.get(callback)
            assert "code" in query_of(done)
            replay = await http.get(callback)
            assert replay.status_code == 400
            assert "already used or has expired" in page_text(replay)


async def test_a_state_expires_after_ten_minutes(tmp_path: Path) -> None:
    clock = FakeClock()
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db", clock) as (_, base):
        async with httpx2.AsyncClient() as http:
            upstream = await approve(http, base, await consent_page(http, Authorization(base)))
            callback = fake.sign_in(upstream.headers["location"])
            clock.now += 601
            late = await http.get(callback)
            assert late.status_code == 400
            assert "expired" in page_text(late)
        assert fake.token_requests == 0


# -- remembered consent ---------------------------------------------------------------------------


async def remember(http: httpx2.AsyncClient, fake: FakeUpstream, base: str, subject: str = "alice") -> None:
    """Approve with "Remember my decision" and sign ``subject`` in."""
    upstream = await approve(http, base, await consent_page(http, Authorization(base)), remember=True)
    done = await http.get(fake.sign_in(upstream.headers["location"], subject))
    assert "code" in query_of(done), done.text


def consent_cookie(http: httpx2.AsyncClient) -> str:
    value = http.cookies.get(CONSENT_COOKIE)
    assert value is not None
    return value


async def test_a_remembered_consent_skips_the_page_for_that_client_only(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            await remember(http, fake, base)
            again = await consent_page(http, Authorization(base))
            assert goes_upstream(fake, again)
            done = await http.get(fake.sign_in(again.headers["location"]))
            assert "code" in query_of(done)
            # Another client, more scopes, or prompt=consent: the page again.
            other = Authorization(base, client_id="other-client", redirect_uri=OTHER_REDIRECT)
            assert (await consent_page(http, other)).status_code == 200
            more = Authorization(base, scope="notes:read notes:write")
            assert (await consent_page(http, more)).status_code == 200
            asked = Authorization(base, extra={"prompt": "consent"})
            assert (await consent_page(http, asked)).status_code == 200
        # Another browser: the page.
        async with httpx2.AsyncClient() as stranger:
            assert (await consent_page(stranger, Authorization(base))).status_code == 200


async def test_a_tampered_or_moved_consent_cookie_is_ignored(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            await remember(http, fake, base)
            value = consent_cookie(http)
            payload, mac = value.split(".")
            data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            # The same signed content, renamed for another client: the signature no longer holds.
            data["clients"][0]["c"] = "other-client"
            forged = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
            for bad in (f"{forged}.{mac}", f"{payload}.{'A' * len(mac)}", payload, "garbage"):
                async with httpx2.AsyncClient(cookies={CONSENT_COOKIE: bad}) as attacker:
                    other = Authorization(base, client_id="other-client", redirect_uri=OTHER_REDIRECT)
                    assert (await consent_page(attacker, other)).status_code == 200
                    assert (await consent_page(attacker, Authorization(base))).status_code == 200


async def test_a_remembered_consent_holds_for_its_own_user_only(tmp_path: Path) -> None:
    db = tmp_path / "proxy.db"
    with fake_upstream() as fake, proxy_of(fake, db) as (_, base):
        async with httpx2.AsyncClient() as http:
            await remember(http, fake, base, "alice")
            skipped = await consent_page(http, Authorization(base))
            assert goes_upstream(fake, skipped)
            # Bob signs in at the provider in this browser: alice's consent is not his.
            refused = await http.get(fake.sign_in(skipped.headers["location"], "bob"))
            assert query_of(refused)["error"] == "access_denied"
            assert set(fake.issued[-2:]) <= fake.revoked  # bob's tokens were revoked, not kept
            # The cookie was cleared: the page is shown again.
            assert (await consent_page(http, Authorization(base))).status_code == 200


async def test_withdrawing_consent_makes_the_cookie_useless(tmp_path: Path) -> None:
    with fake_upstream() as fake, proxy_of(fake, tmp_path / "proxy.db") as (_, base):
        async with httpx2.AsyncClient() as http:
            await remember(http, fake, base)
            listed = await http.get(base + "/consents")
            assert listed.status_code == 200
            assert "Test Public Client" in page_text(listed)
            form = next(f for f in parse_page(listed.text).forms if "client_id" in f.fields)
            withdrawn = await http.post(base + form.action, data=form.fields)
            assert withdrawn.status_code == 303
            kept = consent_cookie(http)  # still in the browser, signed and unexpired
            assert kept
            assert (await consent_page(http, Authorization(base))).status_code == 200


async def test_a_remembered_consent_with_the_real_provider(tmp_path: Path) -> None:
    skip_without_node()
    port = free_port()
    callback = f"http://127.0.0.1:{port}/auth/callback"
    with OIDCProvider(redirect_uris=[callback]) as provider:
        base = f"http://127.0.0.1:{port}"
        proxy = OIDC(
            config_url=provider.config_url,
            client_id=provider.client_id,
            client_secret=provider.client_secret,
            base_url=base,
            name="Example ID",
            store=SQLiteStore(tmp_path / "proxy.db"),
            clients=[PUBLIC_CLIENT],
            mcp_scopes=SCOPES,
            resources=[base + "/mcp"],
        )
        with serve(proxy.app(), port=port):
            async with httpx2.AsyncClient() as http:
                consent = await consent_page(http, Authorization(base))
                upstream = await approve(http, base, consent, remember=True)
                done = await http.get(await sign_in(http, upstream.headers["location"], redirect_uris=[callback]))
                assert "code" in query_of(done), done.text
                again = await consent_page(http, Authorization(base))
                assert again.headers["location"].startswith(provider.issuer)
                done = await http.get(await sign_in(http, again.headers["location"], redirect_uris=[callback]))
                assert "code" in query_of(done), done.text
        await proxy.aclose()
