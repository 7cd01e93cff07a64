"""Client ID Metadata Documents (CIMD): a client whose ``client_id`` is the https URL of its metadata.

The MCP authorization spec prefers this to registration: the client publishes
an RFC 7591 metadata object at a URL and uses that URL as its ``client_id``. The
server fetches it (through :class:`~bastion.authserver._fetch.SafeFetcher`, as
the URL is the client's choice) and requires that:

- the URL is https, with a path, without fragment, credentials or dot segments;
- the document's ``client_id`` equals the URL, compared as strings;
- ``client_name`` and a non-empty ``redirect_uris`` are present, every field
  passing the same checks as registration (``client_from_metadata``);
- no shared secret appears: a document is public, so the client is public
  (``none``) or proves itself with keys (``private_key_jwt``).

Good documents are cached in the store (namespace ``"cimd"``, shared by every
worker) for the ``Cache-Control`` lifetime, bounded; failures are remembered
in the process for a short while, and concurrent resolutions of one URL share
one fetch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from bastion._core.audit import Audit
from bastion._core.errors import ConfigurationError
from bastion._core.http import FetchError, cache_lifetime
from bastion.authserver._client_metadata import SECRET_METHODS, client_from_metadata
from bastion.authserver._errors import InvalidClient, OAuthError
from bastion.authserver._fetch import SafeFetcher
from bastion.authserver._models import Client
from bastion.storage import Store

__all__ = ["CIMD_NAMESPACE", "MAX_CLIENT_ID_URL", "CIMDResolver", "document_client", "is_metadata_document_url"]

#: The store namespace of validated documents.
CIMD_NAMESPACE = "cimd"
#: The longest URL client id accepted.
MAX_CLIENT_ID_URL = 2000
#: How many recent failures a process remembers.
MAX_REMEMBERED_FAILURES = 1024

#: Members a public document must not carry (a secret would be published to the world).
_SECRET_MEMBERS = ("client_secret", "client_secret_expires_at")

logger = logging.getLogger("bastion")


def is_metadata_document_url(client_id: str) -> bool:
    """Whether ``client_id`` has the form of a Client ID Metadata Document URL.

    An https URL of printable ASCII, at most :data:`MAX_CLIENT_ID_URL`
    characters, with a host and a path other than ``/``, without fragment,
    user name or password, and without ``.`` or ``..`` path segments.
    """
    if not isinstance(client_id, str) or not 0 < len(client_id) <= MAX_CLIENT_ID_URL:
        return False
    if not client_id.isascii() or not client_id.isprintable() or " " in client_id or "#" in client_id:
        return False
    try:
        parts = urlsplit(client_id)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "https" or not client_id.startswith("https://") or not parts.hostname or port == 0:
        return False
    if "@" in parts.netloc or parts.path in ("", "/"):
        return False
    return not any(unquote(segment) in (".", "..") for segment in parts.path.split("/"))


class CIMDResolver:
    """Resolves URL client ids to clients: fetched, validated, cached.

    Args:
        fetcher: The outbound policy for the documents.
        store: Where validated documents are cached, for every worker.
        clock: Seconds since the epoch; injectable for tests.
        min_ttl, max_ttl: Bounds for the lifetime taken from ``Cache-Control``.
        default_ttl: The lifetime when the response gives none.
        error_ttl: How long a failure is remembered before the URL is tried again.
        audit: Where a fetched or refused document is reported (``client.fetched``,
            ``client.refused``); a remembered failure or a cached document is not
            reported again.
    """

    def __init__(
        self,
        fetcher: SafeFetcher,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        min_ttl: float = 300.0,
        max_ttl: float = 86400.0,
        default_ttl: float = 3600.0,
        error_ttl: float = 60.0,
        audit: Audit | None = None,
    ) -> None:
        numbers = (min_ttl, max_ttl, default_ttl, error_ttl)
        if not all(math.isfinite(n) and n >= 0 for n in numbers) or min_ttl > max_ttl:
            raise ConfigurationError("CIMD cache lifetimes must be finite, non-negative, min_ttl <= max_ttl")
        self.fetcher = fetcher
        self.store = store
        self.clock = clock
        self.min_ttl = float(min_ttl)
        self.max_ttl = float(max_ttl)
        self.default_ttl = float(default_ttl)
        self.error_ttl = float(error_ttl)
        self.audit = audit if audit is not None else Audit(clock=clock)
        self._failures: dict[str, tuple[float, str, str]] = {}
        self._inflight: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Task[Client]]] = (
            weakref.WeakKeyDictionary()
        )

    async def __call__(self, client_id: str) -> Client:
        """:meth:`resolve`, so the resolver plugs into ``ClientRegistry(metadata_documents=...)``."""
        return await self.resolve(client_id)

    async def resolve(self, client_id: str) -> Client:
        """The client described by the document at ``client_id``.

        Raises:
            InvalidClient: the URL is not acceptable, the document could not be
                fetched, or it is not a valid public client's metadata (the
                description says which; it holds no secret).
        """
        if not is_metadata_document_url(client_id):
            # Not reported: the value is not a URL we would fetch, and may be anything at all.
            raise InvalidClient("the client_id is not an acceptable client metadata document URL")
        self._check_failure(client_id)
        inflight = self._inflight.setdefault(asyncio.get_running_loop(), {})
        task = inflight.get(client_id)
        if task is None:
            # The cache read is part of the single flight too: a caller arriving while another
            # one's fetch completes must find its result, not start a second fetch.
            task = asyncio.ensure_future(self._resolve_once(client_id))
            inflight[client_id] = task
            task.add_done_callback(lambda done: _finished(inflight, client_id, done))
        # Shielded: a caller that gives up does not cancel the fetch the others wait for.
        return await asyncio.shield(task)

    def _check_failure(self, client_id: str) -> None:
        failure = self._failures.get(client_id)
        if failure is not None:
            if self.clock() < failure[0]:
                raise InvalidClient(failure[1], detail=failure[2])
            del self._failures[client_id]

    async def _resolve_once(self, client_id: str) -> Client:
        self._check_failure(client_id)
        cached = await self._cached(client_id)
        if cached is not None:
            return cached
        return await self._load(client_id)

    async def _cached(self, client_id: str) -> Client | None:
        raw = await self.store.get(CIMD_NAMESPACE, client_id)
        if raw is None:
            return None
        try:
            record = json.loads(raw)
            if self.clock() >= float(record["expires"]):
                return None
            return Client.from_json(json.dumps(record["client"]).encode())
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable record is refetched

    async def _load(self, client_id: str) -> Client:
        try:
            fetched = await self.fetcher.get_json(client_id)
        except FetchError as exc:
            # The fetch error names hosts and addresses: logged, never told the client.
            fetched_not = "the client metadata document could not be fetched"
            await self._refused(client_id, "error", fetched_not)
            raise self._failed(client_id, fetched_not, f"{fetched_not}: {exc}") from None
        try:
            client = document_client(client_id, fetched.data)
        except OAuthError as exc:
            invalid = "the client metadata document is not valid"
            await self._refused(client_id, "failure", invalid)
            raise self._failed(client_id, f"{invalid}: {exc.description}", f"{invalid}: {exc}") from None
        ttl = self._ttl(fetched.cache_control)
        record = {"expires": self.clock() + ttl, "client": json.loads(client.to_json())}
        await self.store.put(CIMD_NAMESPACE, client_id, json.dumps(record, separators=(",", ":")).encode(), ttl)
        await self.audit.emit("client.fetched", "success", client_id=client_id, method="cimd")
        return client

    async def _refused(self, client_id: str, outcome: Literal["failure", "error"], reason: str) -> None:
        await self.audit.emit("client.refused", outcome, client_id=client_id, method="cimd", reason=reason)

    def _failed(self, client_id: str, description: str, detail: str) -> InvalidClient:
        """Remember a failure for ``error_ttl`` so a bad URL is not fetched on every request."""
        if self.fetcher.development is not None:
            # A developer trying a document needs the reason, which the client is never told. Logged only
            # with development origins, whose server is on loopback: elsewhere, anyone could fill the log.
            logger.warning("client %s refused: %s", client_id[:200], detail)
        if self.error_ttl > 0:
            while len(self._failures) >= MAX_REMEMBERED_FAILURES:
                del self._failures[next(iter(self._failures))]
            self._failures[client_id] = (self.clock() + self.error_ttl, description, detail)
        return InvalidClient(description, detail=detail)

    async def cached_clients(self) -> list[Client]:
        """The clients whose documents are cached now (fetched and not expired), for administration."""
        clients: list[Client] = []
        async for client_id, _ in self.store.iterate(CIMD_NAMESPACE):
            client = await self.cached(client_id)
            if client is not None:
                clients.append(client)
        return clients

    async def cached(self, client_id: str) -> Client | None:
        """The client of the cached document of ``client_id``, or ``None`` (nothing is fetched)."""
        return await self._cached(client_id)

    async def forget(self, client_id: str) -> bool:
        """Drop the cached document of ``client_id``; the next request fetches it again. Whether one was cached."""
        self._failures.pop(client_id, None)
        return await self.store.delete(CIMD_NAMESPACE, client_id)

    def _ttl(self, cache_control: str | None) -> float:
        """The cache lifetime from ``Cache-Control`` (RFC 9111 section 5.2.2), bounded."""
        return cache_lifetime(cache_control, default=self.default_ttl, minimum=self.min_ttl, maximum=self.max_ttl)


def _finished(inflight: dict[str, asyncio.Task[Client]], client_id: str, task: asyncio.Task[Client]) -> None:
    if inflight.get(client_id) is task:
        del inflight[client_id]
    if not task.cancelled():
        task.exception()  # retrieved here, so a failure nobody waited for is not reported as lost


def document_client(client_id: str, document: Any) -> Client:
    """The client a Client ID Metadata Document describes, checked.

    Raises:
        InvalidClient: the document's ``client_id`` is not the URL, or it sets a secret.
        InvalidClientMetadata, InvalidRedirectURI: a field is missing or wrong.
    """
    if not isinstance(document, Mapping):
        raise InvalidClient("the document is not a JSON object")
    if document.get("client_id") != client_id:
        raise InvalidClient("its client_id is not exactly the URL it was fetched from")
    name = document.get("client_name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidClient("client_name is required")
    redirects = document.get("redirect_uris")
    if not isinstance(redirects, list) or not redirects:
        raise InvalidClient("redirect_uris must be a non-empty array")
    present = [member for member in _SECRET_MEMBERS if member in document]
    if present:
        raise InvalidClient(f"a published document must not contain {present[0]}")
    method = document.get("token_endpoint_auth_method")
    if method in SECRET_METHODS:
        raise InvalidClient(f"{method} needs a shared secret, which a published document cannot hold")
    return client_from_metadata(
        document,
        client_id=client_id,
        kind="metadata_document",
        default_auth_method="none",
        default_application_type=None,
    )
