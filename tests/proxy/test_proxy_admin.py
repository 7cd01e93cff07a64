"""``proxy.admin``: revoking a user at the proxy also revokes the provider's tokens behind their grants."""

from __future__ import annotations

from pathlib import Path

import httpx2

from bastion.proxy import OAuthProxy
from bastion.storage import SQLiteStore

from support.authserver import PUBLIC_CLIENT, SCOPES
from support.fake_upstream import OTHER_CLIENT, fake_upstream, proxy_of, signed_in


async def test_revoking_a_user_revokes_the_providers_tokens_too(tmp_path: Path) -> None:
    db = tmp_path / "proxy.db"
    with fake_upstream() as fake, proxy_of(fake, db) as (_, base):
        async with httpx2.AsyncClient() as http:
            _, tokens = await signed_in(http, fake, base)
            # The operator's process: the same proxy configuration on the same store.
            operator = OAuthProxy(
                fake.upstream(),
                base_url=base,
                store=SQLiteStore(db),
                scopes=SCOPES,
                clients=[PUBLIC_CLIENT, OTHER_CLIENT],
            )
            try:
                [grant] = await operator.admin.grants()
                assert grant.client_id == PUBLIC_CLIENT.client_id
                assert fake.revoked == set()

                assert await operator.admin.revoke_user(grant.subject) == 1

                assert set(fake.issued) <= fake.revoked  # the provider's access and refresh tokens
                form = {
                    "grant_type": "refresh_token",
                    "refresh_token": tokens["refresh_token"],
                    "client_id": PUBLIC_CLIENT.client_id,
                }
                refreshed = await http.post(base + "/token", data=form)
                assert refreshed.status_code == 400
                assert refreshed.json()["error"] == "invalid_grant"
            finally:
                await operator.aclose()
                await operator.store.aclose()
