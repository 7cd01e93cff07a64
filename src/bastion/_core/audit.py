"""The audit trail: every security decision as one event, to a logger and to any sink plugged in.

An event has a time, a name (``signin.failed``, ``token.issued``), an outcome, and
who, what and from where: subject, client id, grant id, the caller's address and a
request id, plus a few named facts (``grant_type``, ``tool``, ``reason``, ``scopes``).
It never carries a token, a code, a secret or a password: the fields are fixed, and
:func:`emit` refuses a fact whose name says it could be one (RFC 6819 section 5.1.6,
OWASP's logging guidance). Values are cut to a bounded length, so a hostile client
cannot fill the log through a parameter.

Events go to the ``bastion.audit`` logger as one JSON object per line (at INFO; give
that logger a handler to keep them) and to every sink of the :class:`Audit` in use,
which may keep them in a store for queries (``bastion audit``). A sink that fails is
logged and skipped: auditing never breaks a request.

The request's address and id come from a context variable that the ASGI middleware
of the resource server and of the authorization server set for each request
(:func:`enter_request`), read only when an event is emitted.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bastion._core import telemetry

__all__ = [
    "AUDIT_LOGGER",
    "EVENTS",
    "Audit",
    "AuditEvent",
    "AuditSink",
    "Outcome",
    "RequestInfo",
    "current_request",
    "default_audit",
    "enter_request",
    "leave_request",
]

#: The logger every event is written to, as a JSON line.
AUDIT_LOGGER = "bastion.audit"

Outcome = Literal["success", "failure", "refused", "error"]

#: Every event name, so that a typo fails at once and a metric can count each; see docs/operations.md.
EVENTS = frozenset(
    {
        "signin.succeeded",
        "signin.failed",
        "signin.throttled",
        "consent.given",
        "consent.remembered",
        "consent.withdrawn",
        "consent.denied",  # the user pressed Deny
        "client.registered",  # method=dcr
        "client.fetched",  # method=cimd
        "client.refused",  # a registration or metadata document refused (reason)
        "client.deleted",
        "code.issued",
        "code.redeemed",
        "code.replayed",  # the grant is revoked
        "token.issued",  # grant_type
        "token.refused",  # a token request refused (grant_type, reason)
        "dpop.refused",  # a token request's DPoP proof refused (reason: which check)
        "refresh.rotated",
        "refresh.replayed",  # a rotated token presented again within the rule: the same successor
        "refresh.reuse_detected",  # the family is revoked
        "grant.revoked",  # count, reason (revocation endpoint, consent withdrawn, admin, reuse)
        "token.introspected",
        "call.refused",  # kind, tool, reason, scopes (needed)
        "upstream.signin_failed",  # provider, reason
        "upstream.refresh_failed",  # provider, reason
        "key.rotated",
    }
)

#: Facts an event may carry beyond its fixed fields; anything else is refused at the emit site.
FACTS = frozenset(
    {
        "grant_type",  # token.issued: authorization_code, refresh_token, ...
        "scopes",  # granted, requested or needed scopes (names only)
        "resource",  # the audience of a token or the resource of a request
        "reason",  # why a decision went as it did, as a short fixed phrase
        "tool",  # a refused call's target
        "kind",  # tool, resource or prompt
        "method",  # how a client authenticated or registered (none, client_secret_basic, dcr, cimd)
        "provider",  # the upstream identity provider's name
        "count",  # how many (revoked grants, ...)
        "status",  # an HTTP status
        "remember",  # consent.given: 1 when the user asked for the consent to be remembered
    }
)

#: The longest text value kept in an event (a client id or a reason); longer ones are cut.
MAX_VALUE = 200

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Who is on the other end of the request being served."""

    address: str | None
    request_id: str


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One security decision.

    Attributes:
        time: Seconds since the epoch.
        name: What happened, dotted (``signin.succeeded``, ``refresh.reuse_detected``).
        outcome: ``success``, ``failure`` (the caller's fault), ``refused`` (policy) or ``error``.
        subject: The user, when known.
        client_id: The OAuth client, when known.
        grant_id: The grant, when known.
        address: The caller's address (as the ASGI server reports it).
        request_id: The request's ``X-Request-Id``, or one made for it.
        facts: A few named facts (see ``FACTS``): strings, numbers or lists of strings.
    """

    time: float
    name: str
    outcome: Outcome
    subject: str | None = None
    client_id: str | None = None
    grant_id: str | None = None
    address: str | None = None
    request_id: str | None = None
    facts: Mapping[str, str | int | list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """The event as a JSON-ready dict, without empty fields."""
        data = asdict(self)
        facts = data.pop("facts")
        return {**{k: v for k, v in data.items() if v is not None}, **facts}

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> AuditEvent:
        """The event :meth:`to_dict` wrote."""
        fixed = {"time", "name", "outcome", "subject", "client_id", "grant_id", "address", "request_id"}
        facts = {k: v for k, v in data.items() if k not in fixed}
        return cls(
            time=float(data["time"]),  # type: ignore[arg-type]
            name=str(data["name"]),
            outcome=str(data["outcome"]),  # type: ignore[arg-type]
            subject=_opt(data.get("subject")),
            client_id=_opt(data.get("client_id")),
            grant_id=_opt(data.get("grant_id")),
            address=_opt(data.get("address")),
            request_id=_opt(data.get("request_id")),
            facts=facts,  # type: ignore[arg-type]
        )


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


#: A sink receives each event; it may be a coroutine function.
AuditSink = Callable[[AuditEvent], Awaitable[None] | None]

# The ASGI scope of the request being served; its address and id are read only when an event is emitted.
_request: contextvars.ContextVar[MutableMapping[str, Any] | None] = contextvars.ContextVar(
    "bastion_request", default=None
)

#: Where the request's :class:`RequestInfo` is kept in its ASGI scope, once made.
_SCOPE_KEY = "bastion.request"


def current_request() -> RequestInfo | None:
    """The request being served, when a bastion middleware entered it (:func:`enter_request`)."""
    scope = _request.get()
    if scope is None:
        return None
    info = scope.get(_SCOPE_KEY)
    if info is None:
        client = scope.get("client")
        request_id = None
        for name, value in scope.get("headers", ()):
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        if request_id is None or not _REQUEST_ID.fullmatch(request_id):
            # It is echoed into logs: only a short token of safe characters is kept.
            request_id = secrets.token_hex(8)
        info = scope[_SCOPE_KEY] = RequestInfo(client[0] if client else None, request_id)
    return info


def enter_request(scope: MutableMapping[str, Any]) -> contextvars.Token[MutableMapping[str, Any] | None] | None:
    """Make ``scope`` the request events are about; ``None`` when one is entered already.

    Cheap (one context variable), since it runs for every request; give the result
    to :func:`leave_request`.
    """
    if _request.get() is not None:
        return None
    return _request.set(scope)


def leave_request(token: contextvars.Token[MutableMapping[str, Any] | None] | None) -> None:
    """Undo :func:`enter_request`."""
    if token is not None:
        _request.reset(token)


def _clean(value: object) -> str | int | list[str]:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        return [str(v)[:MAX_VALUE] for v in list(value)[:50]]
    return str(value)[:MAX_VALUE]


class Audit:
    """Where events go: the ``bastion.audit`` logger and the sinks.

    Args:
        sinks: Callables (or coroutine functions) called with each event.
        log: Whether events are also written to the ``bastion.audit`` logger.
        clock: Seconds since the epoch.
    """

    def __init__(
        self, sinks: Sequence[AuditSink] = (), *, log: bool = True, clock: Callable[[], float] = time.time
    ) -> None:
        self.sinks: list[AuditSink] = list(sinks)
        self.log = log
        self.clock = clock
        self._logger = logging.getLogger(AUDIT_LOGGER)
        self._errors = logging.getLogger("bastion")

    def add_sink(self, sink: AuditSink) -> None:
        """Send every later event to ``sink`` too."""
        self.sinks.append(sink)

    async def emit(
        self,
        name: str,
        outcome: Outcome,
        *,
        subject: str | None = None,
        client_id: str | None = None,
        grant_id: str | None = None,
        **facts: object,
    ) -> AuditEvent:
        """Record one event; the request's address and id come from :func:`enter_request`.

        Raises:
            ValueError: a name not in ``EVENTS``, or a fact that is not one of ``FACTS`` (a
                programming error: a token or secret must never reach an event).
        """
        if name not in EVENTS:
            raise ValueError(f"no audit event is called {name!r}")
        unknown = set(facts) - FACTS
        if unknown:
            raise ValueError(f"audit events carry no {sorted(unknown)}")
        request = current_request()
        event = AuditEvent(
            time=self.clock(),
            name=name,
            outcome=outcome,
            subject=None if subject is None else str(subject)[:MAX_VALUE],
            client_id=None if client_id is None else str(client_id)[:MAX_VALUE],
            grant_id=grant_id,
            address=request.address if request else None,
            request_id=request.request_id if request else None,
            facts={k: _clean(v) for k, v in facts.items() if v is not None},
        )
        if self.log and self._logger.isEnabledFor(logging.INFO):
            self._logger.info(event.to_json())
        for sink in list(self.sinks):
            try:
                result = sink(event)
                if result is not None:
                    await result
            except Exception:
                self._errors.warning("an audit sink failed on %s", name, exc_info=True)
        observer = telemetry.active  # counted by name and outcome, when metrics are on
        if observer is not None:
            observer.count_event(event)
        return event


_default = Audit()


def default_audit() -> Audit:
    """The process's default :class:`Audit` (the logger only), used where none is given."""
    return _default
