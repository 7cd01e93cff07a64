"""``DPoPAuth``: an ``httpx2.Auth`` that makes a client's requests DPoP requests (RFC 9449).

It drives another auth's flow (the SDK's ``OAuthClientProvider``) and rewrites each request
that flow sends, and each answer it reads, so the SDK gets and uses DPoP-bound tokens
without knowing DPoP:

- a token request (a ``POST`` whose form has ``grant_type``) gets a proof, without ``ath``
  and without the profile's ``content_digest`` (it SHOULD NOT be at the token endpoint);
- a request with ``Authorization: Bearer <token>`` is sent as ``Authorization: DPoP <token>``
  with a proof carrying ``ath`` and ``content_digest``, which the MCP profile requires of
  every request to a resource, with a body or without;
- anything else (metadata discovery, registration) goes as it is.

The SDK's ``OAuthToken`` accepts only ``token_type: "Bearer"``, so the inner flow reads a
DPoP token response as a bearer one; this class remembers, per token, that it was issued
as a DPoP token. A server may ignore a proof and issue a bearer token (section 5): that
token is then sent as ``Bearer``, without a proof. A token this object did not see issued
(loaded from storage by another process, or set by the caller) is sent as its ``cnf.jkt``
says when it is a JWT (read for the hint, not verified), and as a DPoP token otherwise.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import orjson

from bastion._jose.proof_key import ProofKey
from bastion.client._memory import Memory, Origin, asks_for_nonce, valid_nonce

__all__ = ["DPoPAuth"]

_FORM = "application/x-www-form-urlencoded"
#: Headers that describe the body as it came over the wire, not the rewritten one.
_WIRE_HEADERS = frozenset({"content-length", "content-encoding", "transfer-encoding"})


class _Kind(enum.Enum):
    TOKEN = "a token request"
    RESOURCE = "a request with an access token"
    OTHER = "any other request"


@dataclass(frozen=True, slots=True)
class _Sent:
    """What was done to one request before it went: its kind and the nonce its proof carried."""

    kind: _Kind
    signed: bool
    nonce: str | None = None


class DPoPAuth(httpx2.Auth):
    """Sign an HTTP client's requests with DPoP proofs of ``key`` (RFC 9449, the MCP DPoP profile).

    Wrap the SDK's ``OAuthClientProvider`` in it: the provider registers, authorizes and
    refreshes as before, and its tokens come bound to ``key`` and are sent with a fresh
    proof each time::

        import httpx2
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client

        from bastion.client import DPoPAuth, ProofKey

        key = ProofKey.generate()  # keep it as long as the tokens: they are bound to it
        auth = DPoPAuth(key, oauth_provider)  # oauth_provider: the SDK's OAuthClientProvider
        async with (
            httpx2.AsyncClient(auth=auth) as http,
            Client(streamable_http_client("https://mcp.example.com/mcp", http_client=http)) as client,
        ):
            await client.call_tool("whoami", {})

    Without ``inner``, it sends no token of its own: it signs the requests that already carry
    ``Authorization: Bearer <token>`` or ``DPoP <token>`` (a token got elsewhere), sending
    them as ``DPoP``, and the token requests made through the client.

    Server nonces (sections 8 and 9): the latest ``DPoP-Nonce`` of each origin goes in the
    next proofs to it, the token endpoint's apart from the resource's. A token endpoint's
    ``400 use_dpop_nonce`` or a resource's ``401`` with ``WWW-Authenticate: DPoP
    error="use_dpop_nonce"``, with a new ``DPoP-Nonce``, makes it send the same request once
    more with a fresh proof carrying that nonce; the inner flow sees only the second answer.

    Only the answers of token requests are read here; a resource's answer, which may be a
    long event stream, is handed on unread.

    Args:
        key: The client's proof key (:class:`~bastion.client.ProofKey`).
        inner: The auth whose flow is driven, typically the SDK's ``OAuthClientProvider``;
            ``None`` to sign what the caller sends.
    """

    #: Each signed request's body is read first: the MCP profile's ``content_digest`` hashes it.
    requires_request_body = True

    def __init__(self, key: ProofKey, inner: httpx2.Auth | None = None) -> None:
        if not isinstance(key, ProofKey):
            raise TypeError(f"DPoPAuth needs a bastion.client.ProofKey, not {type(key).__name__}")
        if inner is not None and not isinstance(inner, httpx2.Auth):
            raise TypeError(f"DPoPAuth wraps an httpx2.Auth, not {type(inner).__name__}")
        self.key = key
        self.inner = inner
        self._memory = Memory()

    async def async_auth_flow(self, request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        """Drive the inner flow (or send ``request`` alone), signing what it sends; see the class."""
        flow = self.inner.async_auth_flow(request) if self.inner is not None else _alone_async(request)
        signed: dict[int, httpx2.Request] = {}  # the requests holding a proof, alive so that no id is reused
        try:
            outgoing = await flow.__anext__()
            while True:
                if _wants_body(outgoing):
                    await outgoing.aread()
                sent = self._prepare(outgoing, signed)
                response = yield outgoing
                if sent.kind is _Kind.TOKEN:
                    await response.aread()  # a token endpoint's JSON: the nonce error and the token type are in it
                nonce = self._observe(outgoing, sent, response)
                if nonce is not None:
                    again = _copy(outgoing)  # the first answer keeps the request it answered
                    sent = self._prepare(again, signed)
                    response = yield again
                    if sent.kind is _Kind.TOKEN:
                        await response.aread()
                    self._observe(again, sent, response)  # no third try: the inner flow gets this answer
                outgoing = await flow.asend(self._for_inner(sent, response))
        except StopAsyncIteration:
            return
        finally:
            await flow.aclose()

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
        """The same for ``httpx2.Client``; an inner auth that works only asynchronously is refused.

        Raises:
            TypeError: the inner auth (the SDK's ``OAuthClientProvider`` is one) has an
                asynchronous flow only: use an ``httpx2.AsyncClient``.
        """
        if self.inner is not None and _async_only(self.inner):
            raise TypeError(
                f"{type(self.inner).__name__} works only with httpx2.AsyncClient, so DPoPAuth wrapping it does too"
            )
        flow = self.inner.sync_auth_flow(request) if self.inner is not None else _alone_sync(request)
        signed: dict[int, httpx2.Request] = {}  # the requests holding a proof, alive so that no id is reused
        try:
            outgoing = next(flow)
            while True:
                if _wants_body(outgoing):
                    outgoing.read()
                sent = self._prepare(outgoing, signed)
                response = yield outgoing
                if sent.kind is _Kind.TOKEN:
                    response.read()
                nonce = self._observe(outgoing, sent, response)
                if nonce is not None:
                    again = _copy(outgoing)  # the first answer keeps the request it answered
                    sent = self._prepare(again, signed)
                    response = yield again
                    if sent.kind is _Kind.TOKEN:
                        response.read()
                    self._observe(again, sent, response)
                outgoing = flow.send(self._for_inner(sent, response))
        except StopIteration:
            return
        finally:
            flow.close()

    def _prepare(self, request: httpx2.Request, signed: dict[int, httpx2.Request]) -> _Sent:
        """Sign ``request`` in place as its kind needs (its body read already); ``signed`` holds the ones signed."""
        kind, token = _classify(request)
        bearer = kind is _Kind.RESOURCE and not self._is_dpop(token)
        if kind is _Kind.OTHER or bearer:
            if bearer:
                # A bearer token, issued although a proof came with its request (section 5).
                request.headers["Authorization"] = f"Bearer {token}"
            if id(request) in signed:
                del request.headers["DPoP"]  # this flow's proof of the same request, sent before
                del signed[id(request)]
            return _Sent(kind, signed=False)
        nonce = self._memory.nonce(_origin(request, kind))
        url = str(request.url)
        if kind is _Kind.TOKEN:
            proof = self.key.proof(request.method, url, nonce=nonce)
        else:
            request.headers["Authorization"] = f"DPoP {token}"
            proof = self.key.proof(request.method, url, access_token=token, nonce=nonce, body=request.content)
        request.headers["DPoP"] = proof
        signed[id(request)] = request
        return _Sent(kind, signed=True, nonce=nonce)

    def _is_dpop(self, token: str) -> bool:
        """Whether ``token`` goes with the DPoP scheme: as it was issued, else as a JWT's ``cnf.jkt`` says.

        A token this object did not see issued (loaded from storage after a restart) is read
        as a JWT, without any check, only for the hint; an opaque one is taken as a DPoP token.
        """
        known = self._memory.is_dpop(token)
        if known is not None:
            return known
        bound = _jwt_bound(token)
        return True if bound is None else bound

    def _observe(self, request: httpx2.Request, sent: _Sent, response: httpx2.Response) -> str | None:
        """Remember the answer's nonce; the nonce to retry with when the server asked for a new one."""
        nonce = valid_nonce(response.headers.get("DPoP-Nonce"))
        if nonce is None:
            return None
        self._memory.set_nonce(_origin(request, sent.kind), nonce)
        if not sent.signed or nonce == sent.nonce:
            return None
        if sent.kind is _Kind.TOKEN:
            asked = response.status_code == 400 and _json(response).get("error") == "use_dpop_nonce"  # section 8
        else:
            asked = response.status_code == 401 and asks_for_nonce(response.headers.get_list("WWW-Authenticate"))
        return nonce if asked else None

    def _for_inner(self, sent: _Sent, response: httpx2.Response) -> httpx2.Response:
        """The answer as the inner flow reads it: a DPoP token response made a bearer one, the token remembered."""
        if sent.kind is not _Kind.TOKEN or not sent.signed or not 200 <= response.status_code < 300:
            return response
        body = _json(response)
        token, token_type = body.get("access_token"), body.get("token_type")
        if not isinstance(token, str) or not isinstance(token_type, str):
            return response
        if token_type.lower() == "bearer":  # RFC 6749 section 7.1: token types compare case-insensitively
            self._memory.issued(token, dpop=False)
            return response
        if token_type.lower() != "dpop":
            return response
        self._memory.issued(token, dpop=True)
        headers = [(name, value) for name, value in response.headers.multi_items() if name not in _WIRE_HEADERS]
        return httpx2.Response(
            response.status_code,
            headers=headers,
            content=orjson.dumps({**body, "token_type": "Bearer"}),
            request=response.request,
            extensions=response.extensions,
        )


def _jwt_bound(token: str) -> bool | None:
    """Whether a JWT's payload has ``cnf.jkt`` (read, not verified); ``None`` for a token that is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    if not isinstance(payload, dict):
        return None
    cnf = payload.get("cnf")
    return isinstance(cnf, dict) and "jkt" in cnf


def _copy(request: httpx2.Request) -> httpx2.Request:
    """A new request like ``request`` (its body read already), to send again with a new proof."""
    return httpx2.Request(
        request.method,
        request.url,
        headers=request.headers.copy(),
        content=request.content,
        extensions=request.extensions,
    )


def _classify(request: httpx2.Request) -> tuple[_Kind, str]:
    """A request's kind, and the access token of one that carries it (else ``""``)."""
    if _maybe_token_request(request) and any(name == "grant_type" for name, _ in _form(request.content)):
        return _Kind.TOKEN, ""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() in ("bearer", "dpop") and token:
        return _Kind.RESOURCE, token
    return _Kind.OTHER, ""


def _maybe_token_request(request: httpx2.Request) -> bool:
    content_type = request.headers.get("Content-Type", "")
    return request.method == "POST" and content_type.split(";")[0].strip().lower() == _FORM


def _wants_body(request: httpx2.Request) -> bool:
    """Whether signing ``request`` needs its body: a form to look for ``grant_type`` in, or a digest to make."""
    return _maybe_token_request(request) or "Authorization" in request.headers


def _form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)


def _origin(request: httpx2.Request, kind: _Kind) -> Origin:
    url = request.url
    return (url.scheme, url.host, url.port, kind is _Kind.TOKEN)


def _json(response: httpx2.Response) -> dict[str, Any]:
    """A read response's JSON object, or an empty one."""
    try:
        parsed = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _async_only(auth: httpx2.Auth) -> bool:
    """Whether ``auth`` overrides only the asynchronous flow, leaving the synchronous one to send nothing."""
    kind = type(auth)
    return (
        kind.async_auth_flow is not httpx2.Auth.async_auth_flow
        and kind.sync_auth_flow is httpx2.Auth.sync_auth_flow
        and kind.auth_flow is httpx2.Auth.auth_flow
    )


async def _alone_async(request: httpx2.Request) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
    yield request


def _alone_sync(request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response, None]:
    yield request
