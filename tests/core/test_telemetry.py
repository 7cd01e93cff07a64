"""bastion's metrics and spans, read back from OpenTelemetry's SDK: what each instrumented place records.

Each test instruments bastion with an in-memory SDK (``support.telemetry``), drives one
real part (an ``Audit``, a verifier and its cache, a ``RemoteJSON``, a store) and reads
the exact counts back. Without ``bastion.instrument()`` nothing is recorded and
OpenTelemetry's metrics API is never imported; without OpenTelemetry installed bastion
still works, and ``instrument()`` says what to install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import StatusCode

import bastion
from bastion import AccessToken, ConfigurationError, InvalidToken, KeysUnavailable, Verifier
from bastion._core import telemetry
from bastion._core.audit import Audit
from bastion._core.remote_json import RemoteJSON
from bastion.storage import MemoryStore, ObservedStore, StoreError

from support.clock import FakeClock
from support.notes import TOKENS, StaticVerifier
from support.telemetry import Recorded, key
from support.telemetry import recorded_fixture as recorded_fixture


async def test_audit_events_count_decisions_tokens_by_grant_and_refresh_outcomes(recorded: Recorded) -> None:
    audit = Audit(log=False)
    await audit.emit("token.issued", "success", client_id="app", grant_type="authorization_code")
    await audit.emit("token.issued", "success", client_id="app", grant_type="authorization_code")
    await audit.emit("token.issued", "success", client_id="app", grant_type="refresh_token")
    await audit.emit("refresh.rotated", "success", client_id="app")
    await audit.emit("refresh.replayed", "success", client_id="app")
    await audit.emit("refresh.reuse_detected", "refused", client_id="app")
    await audit.emit("token.refused", "failure", client_id="app", grant_type="refresh_token", reason="expired")
    await audit.emit("token.refused", "failure", client_id="app", grant_type="authorization_code", reason="used")
    await audit.emit("signin.failed", "failure", subject="bob", reason="wrong password")

    assert recorded.series("bastion.decisions") == {
        key({"decision": "token.issued", "outcome": "success"}): 3,
        key({"decision": "refresh.rotated", "outcome": "success"}): 1,
        key({"decision": "refresh.replayed", "outcome": "success"}): 1,
        key({"decision": "refresh.reuse_detected", "outcome": "refused"}): 1,
        key({"decision": "token.refused", "outcome": "failure"}): 2,
        key({"decision": "signin.failed", "outcome": "failure"}): 1,
    }
    assert recorded.series("bastion.tokens.issued") == {
        key({"grant_type": "authorization_code"}): 2,
        key({"grant_type": "refresh_token"}): 1,
    }
    assert recorded.series("bastion.refreshes") == {
        key({"outcome": "rotated"}): 1,
        key({"outcome": "replayed"}): 1,
        key({"outcome": "reuse_detected"}): 1,
        key({"outcome": "refused"}): 1,
    }


class _Unavailable(Verifier):
    async def check(self, token: str) -> AccessToken:
        raise KeysUnavailable("the key set cannot be fetched")


async def test_a_verifier_measures_each_token_it_checks_and_never_a_cache_hit(recorded: Recorded) -> None:
    verifier = StaticVerifier(TOKENS)
    for _ in range(3):
        await verifier.verify("reader")  # checked once, then served from the cache
    with pytest.raises(InvalidToken):
        await verifier.verify("forged")
    with pytest.raises(KeysUnavailable):
        await _Unavailable().verify("anything")
    assert verifier.checks == 2

    assert recorded.series("bastion.verification.duration") == {
        key({"verifier": "StaticVerifier", "outcome": "valid"}): 1,
        key({"verifier": "StaticVerifier", "outcome": "invalid"}): 1,
        key({"verifier": "_Unavailable", "outcome": "unavailable"}): 1,
    }
    spans = recorded.spans("verify token")
    assert [span.attributes["bastion.outcome"] for span in spans if span.attributes] == [
        "valid",
        "invalid",
        "unavailable",
    ]
    # A refused token is the caller's fault, not the server's: only the outage is an error.
    assert [span.status.status_code for span in spans] == [StatusCode.UNSET, StatusCode.UNSET, StatusCode.ERROR]
    assert all("reader" not in str(span.attributes) and "forged" not in str(span.attributes) for span in spans)


async def test_remote_documents_count_fetches_and_failures_each_in_a_span(recorded: Recorded) -> None:
    answers: list[Any] = [{"keys": []}, OSError("connection refused"), {"keys": []}]

    async def fetch(url: str) -> tuple[Any, str | None]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer, None

    clock = FakeClock()
    remote = RemoteJSON(
        "https://issuer.example/jwks?secret=1",
        parse=lambda document: document,
        fetch=fetch,
        label="JWKS",
        clock=clock,
        refetch_interval=0,
        on_failure=lambda *_: None,
    )
    for _ in range(3):
        clock.now += 1
        await remote.refresh()

    assert recorded.series("bastion.fetch.duration") == {
        key({"document": "JWKS", "outcome": "ok"}): 2,
        key({"document": "JWKS", "outcome": "error"}): 1,
    }
    spans = recorded.spans("fetch JWKS")
    assert [span.status.status_code for span in spans] == [StatusCode.UNSET, StatusCode.ERROR, StatusCode.UNSET]
    # The URL is shown without its query, which could hold a secret.
    assert {span.attributes["url.full"] for span in spans if span.attributes} == {"https://issuer.example/jwks"}


async def test_an_observed_store_times_each_operation_and_counts_its_errors(recorded: Recorded) -> None:
    inner = MemoryStore()
    store = ObservedStore.when_instrumented(inner)
    assert isinstance(store, ObservedStore)
    assert ObservedStore.when_instrumented(store) is store  # never wrapped twice
    await store.put("codes", "a", b"1", ttl=60)
    assert await store.add("codes", "b", b"2")
    assert await store.get("codes", "a") == b"1"
    assert await store.take("codes", "a") == b"1"
    assert await store.get("codes", "a") is None
    await store.aclose()
    with pytest.raises(StoreError):
        await store.get("codes", "b")

    assert recorded.series("bastion.store.duration") == {
        key({"store": "MemoryStore", "operation": "put", "outcome": "ok"}): 1,
        key({"store": "MemoryStore", "operation": "add", "outcome": "ok"}): 1,
        key({"store": "MemoryStore", "operation": "get", "outcome": "ok"}): 2,
        key({"store": "MemoryStore", "operation": "take", "outcome": "ok"}): 1,
        key({"store": "MemoryStore", "operation": "get", "outcome": "error"}): 1,
    }


async def test_instrumentation_ends_with_uninstrument() -> None:
    store = MemoryStore()
    assert telemetry.active is None
    assert ObservedStore.when_instrumented(store) is store  # not instrumented: the store as given
    bastion.instrument()  # OpenTelemetry's global providers: no SDK configured, nothing exported
    assert telemetry.active is not None
    bastion.uninstrument()
    assert telemetry.active is None


def test_prometheus_and_a_meter_provider_of_ones_own_exclude_each_other() -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    with pytest.raises(ConfigurationError, match="not both"):
        bastion.instrument(meter_provider=MeterProvider(), prometheus=True)
    assert telemetry.active is None


def _run(code: str) -> str:
    """Run ``code`` in a fresh interpreter with this bastion; its standard output."""
    source = Path(bastion.__file__).resolve().parents[1]
    tests = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(source), str(tests)])}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


_VERIFY_AND_AUDIT = """
    import asyncio
    from bastion._core.audit import Audit
    from bastion.storage import MemoryStore, ObservedStore
    from support.notes import TOKENS, StaticVerifier

    async def main():
        verifier = StaticVerifier(TOKENS)
        assert (await verifier.verify("reader")).subject == "alice"
        await Audit(log=False).emit("token.issued", "success", grant_type="authorization_code")
        store = MemoryStore()
        assert ObservedStore.when_instrumented(store) is store

    asyncio.run(main())
"""


def test_without_instrument_no_metric_code_runs() -> None:
    out = _run(
        "import sys\n"
        + textwrap.dedent(_VERIFY_AND_AUDIT)
        + textwrap.dedent("""
        from bastion._core import telemetry
        assert telemetry.active is None
        print("opentelemetry.metrics" in sys.modules)
        """)
    )
    assert out.strip() == "False"


def test_without_opentelemetry_bastion_works_and_instrument_says_what_to_install() -> None:
    # The MCP SDK needs OpenTelemetry's trace API; the metrics API is what bastion alone would bring.
    out = _run(
        "import sys\nsys.modules['opentelemetry.metrics'] = None\n"
        + textwrap.dedent(_VERIFY_AND_AUDIT)
        + textwrap.dedent("""
        import bastion
        from bastion._core import telemetry
        try:
            bastion.instrument()
        except bastion.ConfigurationError as exc:
            print(exc)
        assert telemetry.active is None
        """)
    )
    assert 'pip install "mcp-bastion[otel]"' in out


def test_prometheus_without_its_extra_says_what_to_install() -> None:
    out = _run("""
        import sys
        sys.modules["opentelemetry.exporter.prometheus"] = None
        import bastion
        from bastion._core import telemetry
        try:
            bastion.instrument(prometheus=True)
        except bastion.ConfigurationError as exc:
            print(exc)
        assert telemetry.active is None
    """)
    assert 'pip install "mcp-bastion[prometheus]"' in out
