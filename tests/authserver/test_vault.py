"""TokenVault: upstream tokens sealed at rest with AES-256-GCM, keys configured or generated, rotation."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bastion._core.errors import BastionError, ConfigurationError
from bastion.authserver._vault import KEY_NAMESPACE, TokenVault, VaultError
from bastion.storage import SQLiteStore

TOKEN = b"gho_upstream-access-token-0123456789"
CONTEXT = b"upstream:record-1"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with SQLiteStore(tmp_path / "auth.db") as store:
        yield store


def raw_key() -> bytes:
    return secrets.token_bytes(32)


def files_content(folder: Path) -> bytes:
    """The bytes of every file in ``folder`` (the database and any journal beside it)."""
    return b"".join(file.read_bytes() for file in sorted(folder.iterdir()) if file.is_file())


async def test_round_trip_with_a_configured_key(store: SQLiteStore) -> None:
    vault = TokenVault(store, keys=TokenVault.generate_key())
    sealed = await vault.seal(TOKEN, context=CONTEXT)
    assert await vault.open(sealed, context=CONTEXT) == TOKEN
    assert await vault.seal(TOKEN, context=CONTEXT) != sealed  # a fresh nonce each time
    assert not vault.needs_rotation(sealed)


async def test_json_round_trip(store: SQLiteStore) -> None:
    vault = TokenVault(store, keys=raw_key())
    tokens = {"access_token": "at-1", "refresh_token": "rt-1", "expires_at": 1700000000.5, "scopes": ["openid"]}
    sealed = await vault.seal_json(tokens, context=CONTEXT)
    assert await vault.open_json(sealed, context=CONTEXT) == tokens
    not_json = await vault.seal(b"\xff not json", context=CONTEXT)
    with pytest.raises(VaultError):
        await vault.open_json(not_json, context=CONTEXT)


async def test_generated_key_formats() -> None:
    key = TokenVault.generate_key()
    assert len(key) == 43
    assert len(base64.urlsafe_b64decode(key + "=")) == 32
    assert TokenVault.generate_key() != key


async def test_a_blob_does_not_open_in_another_context(store: SQLiteStore) -> None:
    vault = TokenVault(store, keys=raw_key())
    sealed = await vault.seal(TOKEN, context=b"upstream:record-1")
    with pytest.raises(VaultError) as caught:
        await vault.open(sealed, context=b"upstream:record-2")
    assert TOKEN.decode() not in str(caught.value)
    with pytest.raises(VaultError):
        await vault.open(sealed, context=b"")


async def test_any_tampered_byte_fails(store: SQLiteStore) -> None:
    vault = TokenVault(store, keys=raw_key())
    sealed = await vault.seal(TOKEN, context=CONTEXT)
    for position in range(len(sealed)):
        tampered = bytearray(sealed)
        tampered[position] ^= 0x01
        with pytest.raises(VaultError):
            await vault.open(bytes(tampered), context=CONTEXT)


async def test_truncated_or_garbage_fails_with_vault_error_only(store: SQLiteStore) -> None:
    vault = TokenVault(store, keys=raw_key())
    sealed = await vault.seal(TOKEN, context=CONTEXT)
    for length in range(len(sealed)):
        with pytest.raises(VaultError):
            await vault.open(sealed[:length], context=CONTEXT)
    with pytest.raises(VaultError):
        await vault.open(sealed + b"\x00", context=CONTEXT)
    with pytest.raises(VaultError):
        await vault.open(b"\x00" * 100, context=CONTEXT)
    with pytest.raises(VaultError):
        await vault.open("not bytes", context=CONTEXT)  # type: ignore[arg-type]
    assert not vault.needs_rotation(sealed[:10])


async def test_a_blob_sealed_with_an_unknown_key_fails(store: SQLiteStore) -> None:
    old, other = TokenVault.generate_key(), TokenVault.generate_key()
    sealed = await TokenVault(store, keys=old).seal(TOKEN, context=CONTEXT)
    vault = TokenVault(store, keys=other)
    with pytest.raises(VaultError) as caught:
        await vault.open(sealed, context=CONTEXT)
    assert isinstance(caught.value, BastionError)
    assert caught.value.description == "encrypted data cannot be opened"
    assert "unknown key" in str(caught.value)
    for secret in (old, other, TOKEN.decode()):
        assert secret not in str(caught.value)
    assert not vault.needs_rotation(sealed)


async def test_rotation(store: SQLiteStore) -> None:
    old, new = TokenVault.generate_key(), TokenVault.generate_key()
    old_blob = await TokenVault(store, keys=old).seal(TOKEN, context=CONTEXT)

    rotating = TokenVault(store, keys=[new, old])
    assert await rotating.open(old_blob, context=CONTEXT) == TOKEN
    assert rotating.needs_rotation(old_blob)
    new_blob = await rotating.seal(TOKEN, context=CONTEXT)
    assert not rotating.needs_rotation(new_blob)
    assert new_blob[1:9] != old_blob[1:9]  # the key id in the header

    rotated = TokenVault(store, keys=[new])
    assert await rotated.open(new_blob, context=CONTEXT) == TOKEN
    with pytest.raises(VaultError):
        await rotated.open(old_blob, context=CONTEXT)


async def test_a_comma_separated_string_lists_keys_newest_first(store: SQLiteStore) -> None:
    old, new = TokenVault.generate_key(), TokenVault.generate_key()
    old_blob = await TokenVault(store, keys=old).seal(TOKEN, context=CONTEXT)
    vault = TokenVault(store, keys=f" {new} , {old} ")
    assert await vault.open(old_blob, context=CONTEXT) == TOKEN
    assert vault.needs_rotation(old_blob)
    assert vault.key_ids == TokenVault(store, keys=[new, old]).key_ids


async def test_text_raw_and_standard_base64_forms_of_one_key_agree(store: SQLiteStore) -> None:
    key = raw_key()
    sealed = await TokenVault(store, keys=key).seal(TOKEN, context=CONTEXT)
    for form in (
        base64.urlsafe_b64encode(key).rstrip(b"=").decode(),
        base64.urlsafe_b64encode(key).decode(),
        base64.b64encode(key).decode(),
        base64.b64encode(key).decode().rstrip("="),
    ):
        assert await TokenVault(store, keys=[form]).open(sealed, context=CONTEXT) == TOKEN


@pytest.mark.parametrize(
    ("keys", "problem"),
    [
        (base64.urlsafe_b64encode(b"k" * 16).decode().rstrip("="), "16 bytes"),
        (base64.urlsafe_b64encode(b"k" * 64).decode().rstrip("="), "64 bytes"),
        ("this is not base64 at all, not even close!!", "not base64"),
        ("é" * 43, "not base64"),
        (b"k" * 31, "31 bytes"),
        ([], "no encryption key"),
        ("", "no encryption key"),
        ([TokenVault.generate_key(), ""], "key 2 of 2 is empty"),
    ],
)
async def test_bad_key_configurations_are_refused_without_echoing_the_key(
    store: SQLiteStore, keys: str | bytes | list[str], problem: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        TokenVault(store, keys=keys)
    message = str(caught.value)
    assert problem in message
    for key in [keys] if isinstance(keys, str | bytes) else keys:
        text = key.decode("latin-1") if isinstance(key, bytes) else key
        for part in text.split(","):
            if part.strip():
                assert part.strip() not in message


async def test_the_same_key_twice_is_refused(store: SQLiteStore) -> None:
    key = raw_key()
    with pytest.raises(ConfigurationError, match="twice"):
        TokenVault(store, keys=[key, base64.b64encode(key).decode()])


async def test_generated_key_is_kept_in_the_store(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "auth.db"
    caplog.set_level(logging.INFO, logger="bastion")
    async with SQLiteStore(path) as store:
        first = TokenVault(store)
        sealed = await first.seal(TOKEN, context=CONTEXT)
        await first.seal(TOKEN, context=CONTEXT)
        stored = await store.get(KEY_NAMESPACE, "key")
    assert stored is not None
    key = json.loads(stored)["key"]
    notices = [r.getMessage() for r in caplog.records if r.name == "bastion"]
    assert len(notices) == 1
    assert "generated" in notices[0]
    assert "BASTION_ENCRYPTION_KEYS" in notices[0]
    assert key not in notices[0]

    async with SQLiteStore(path) as store:  # a restart, or another worker
        second = TokenVault(store)
        assert await second.open(sealed, context=CONTEXT) == TOKEN
        assert second.key_ids == first.key_ids
        configured = TokenVault(store, keys=key)  # the stored key, moved to the settings
        assert await configured.open(sealed, context=CONTEXT) == TOKEN


async def test_two_workers_racing_for_the_first_key_agree(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    async with SQLiteStore(path) as store_a, SQLiteStore(path) as store_b:
        vault_a, vault_b = TokenVault(store_a), TokenVault(store_b)
        blob_a, blob_b = await asyncio.gather(
            vault_a.seal(b"from a", context=CONTEXT), vault_b.seal(b"from b", context=CONTEXT)
        )
        assert vault_a.key_ids == vault_b.key_ids
        assert await vault_b.open(blob_a, context=CONTEXT) == b"from a"
        assert await vault_a.open(blob_b, context=CONTEXT) == b"from b"


async def test_concurrent_first_use_in_one_vault(store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="bastion")
    vault = TokenVault(store)
    blobs = await asyncio.gather(*(vault.seal(TOKEN, context=CONTEXT) for _ in range(5)))
    assert len(vault.key_ids) == 1
    assert {blob[1:9] for blob in blobs} == {blobs[0][1:9]}
    assert len([r for r in caplog.records if "BASTION_ENCRYPTION_KEYS" in r.getMessage()]) == 1


async def test_the_database_file_holds_the_sealed_blob_not_the_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "auth.db"
    async with SQLiteStore(path) as store:
        vault = TokenVault(store, keys=raw_key())
        sealed = await vault.seal(TOKEN, context=CONTEXT)
        await store.put("upstream", "record-1", sealed)
    on_disk = files_content(tmp_path)
    assert sealed in on_disk
    assert TOKEN not in on_disk
