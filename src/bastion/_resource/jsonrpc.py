"""Reading a JSON-RPC POST once, with a size limit, to find what it targets.

The HTTP layer needs the target of ``tools/call``, ``resources/read`` and
``prompts/get`` to answer a real HTTP 403 step-up before the SDK runs. The body
is read here once and handed on to the SDK unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from starlette.requests import Request
from starlette.types import Message, Receive

from bastion._core.errors import BastionError
from bastion._resource.policy import TargetKind

__all__ = ["DEFAULT_MAX_BODY_SIZE", "BodyTooLarge", "Target", "read_body", "replay", "request_body", "targets"]

#: The SDK transport's own default limit.
DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024

#: The methods whose target has a policy, and the params field naming the target.
TARGET_METHODS: dict[str, tuple[TargetKind, str]] = {
    "tools/call": ("tool", "name"),
    "resources/read": ("resource", "uri"),
    "prompts/get": ("prompt", "name"),
}

Target = tuple[TargetKind, str, Any]
"""(kind, name, JSON-RPC id) of one targeted request."""


class BodyTooLarge(BastionError):
    """The request body is larger than the limit."""

    description = "Request body too large"


async def request_body(request: Request, limit: int = DEFAULT_MAX_BODY_SIZE) -> bytes:
    """A Starlette request's body, read once at most ``limit`` bytes and kept for the endpoint.

    Raises:
        BodyTooLarge: ``Content-Length`` or the bytes received go past ``limit``; nothing more is read.
    """
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # Starlette's cache of Request.body(): the endpoint reads the same bytes
    return body


async def read_body(receive: Receive, limit: int) -> tuple[bytes, list[Message]]:
    """The whole body (at most ``limit`` bytes) and any non-body message received after it."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), [message]
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), []


def replay(body: bytes, trailing: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that yields ``body`` once, then whatever the original yields."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}, *trailing]

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


def targets(body: bytes) -> Iterator[Target]:
    """The policy targets of a JSON-RPC message or batch; nothing for what is not one.

    Malformed JSON yields nothing: the SDK answers it with its own parse error.
    """
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        return
    for item in message if isinstance(message, list) else (message,):
        if not isinstance(item, dict):
            continue
        method = item.get("method")
        target = TARGET_METHODS.get(method) if isinstance(method, str) else None
        if target is None:
            continue
        params = item.get("params")
        name = params.get(target[1]) if isinstance(params, dict) else None
        if isinstance(name, str):
            yield target[0], name, item.get("id")
