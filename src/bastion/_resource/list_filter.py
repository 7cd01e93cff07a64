"""Policies inside the SDK: list results filtered, calls refused (defence in depth).

A server middleware on the SDK's request pipeline. ``tools/list``,
``resources/list``, ``resources/templates/list`` and ``prompts/list`` return what
the caller may use and, unless visibility is ``"strict"``, what more scope would
unlock: hosts call only what they have listed, so a tool hidden until its scope is
granted could never trigger the step-up that grants it. What a role or a custom
policy refuses stays hidden. ``tools/call``, ``resources/read`` and ``prompts/get``
of something the caller may not use are refused even when no HTTP layer checked
them first (an in-process client, another transport), and reported as the audit
event ``call.refused``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextvars import ContextVar
from typing import Any, Literal, TypeAlias

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError

from bastion._core.audit import Audit
from bastion._core.errors import ConfigurationError
from bastion._resource.guard import FORBIDDEN_CODE, report_refusal, step_up_scopes
from bastion._resource.jsonrpc import TARGET_METHODS
from bastion._resource.policy import Decision, TargetKind
from bastion._resource.registry import PolicyRegistry
from bastion._resource.tokens import AccessToken, get_access_token_or_none

__all__ = ["UNRESTRICTED", "ListVisibility", "PolicyEnforcement"]

#: What list results show: ``"discoverable"``, what the caller may use and what more
#: scope would unlock; ``"strict"``, only what the caller may use now.
ListVisibility: TypeAlias = Literal["discoverable", "strict"]

#: Set by the HTTP layer to its registry for a request whose token satisfies every policy of
#: that registry (``PolicyRegistry.allows_everything``): then nothing here can refuse or hide
#: anything. Only the same registry's checks are skipped: an app wrapped by ``protect()`` keeps
#: its own policies, which the outer layer never saw.
UNRESTRICTED: ContextVar[PolicyRegistry | None] = ContextVar("bastion_unrestricted", default=None)

#: list method -> (result field, item kind, item field naming it)
_LISTS: dict[str, tuple[str, TargetKind, str]] = {
    "tools/list": ("tools", "tool", "name"),
    "resources/list": ("resources", "resource", "uri"),
    "resources/templates/list": ("resourceTemplates", "resource", "uriTemplate"),
    "prompts/list": ("prompts", "prompt", "name"),
}


class PolicyEnforcement:
    """The SDK server middleware that applies a :class:`PolicyRegistry`.

    Args:
        registry: The policies.
        enforce_default: Whether the default policy applies. Off on a server with no
            verifier, where every caller is anonymous: then only explicit policies apply.
        list_visibility: ``"discoverable"`` (default) lists what more scope would unlock
            too; ``"strict"`` only what the caller may use now. An anonymous caller, who
            has no token to step up from, always gets the strict list.
        known_scopes: The scopes the server knows, read when a call is refused: the
            refusal's ``data.scope`` keeps the token's known scopes (see
            :func:`~bastion._resource.guard.step_up_scopes`).
    """

    def __init__(
        self,
        registry: PolicyRegistry,
        *,
        enforce_default: bool,
        list_visibility: ListVisibility = "discoverable",
        known_scopes: Callable[[], Iterable[str]] = tuple,
    ) -> None:
        if list_visibility not in ("discoverable", "strict"):
            raise ConfigurationError(f"list_visibility must be 'discoverable' or 'strict', got {list_visibility!r}")
        self.registry = registry
        self.enforce_default = enforce_default
        self.list_visibility: ListVisibility = list_visibility
        self.known_scopes = known_scopes
        #: Where refused calls are reported (``call.refused``); ``MCPServer`` shares its own.
        self.audit = Audit()

    async def _decide(self, kind: TargetKind, name: str, token: AccessToken | None) -> Decision:
        registry = self.registry
        if not self.enforce_default and registry.policy_for(kind, name) is registry.default:
            return Decision.allow()
        return await registry.decide(kind, name, token)

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if UNRESTRICTED.get() is self.registry:
            return await call_next(ctx)
        method = ctx.method
        token = get_access_token_or_none()
        target = TARGET_METHODS.get(method)
        if target is not None:
            params = ctx.params or {}
            name = params.get(target[1])
            if isinstance(name, str):
                decision = await self._decide(target[0], name, token)
                if not decision.allowed:
                    await report_refusal(self.audit, decision, target[0], name, token)
                    raise self._refusal(decision, token)
            return await call_next(ctx)
        listing = _LISTS.get(method)
        result = await call_next(ctx)
        if listing is None or not isinstance(result, dict):
            return result
        field, kind, key = listing
        items = result.get(field)
        if isinstance(items, list):
            discoverable = self.list_visibility == "discoverable" and token is not None
            kept = []
            for item in items:
                name = item.get(key) if isinstance(item, dict) else None
                if not isinstance(name, str):
                    continue
                decision = await self._decide(kind, name, token)
                if decision.allowed or (discoverable and decision.scopes is not None):
                    kept.append(item)
            result = {**result, field: kept}
        return result

    def _refusal(self, decision: Decision, token: AccessToken | None) -> MCPError:
        if decision.scopes is None:
            return MCPError(code=FORBIDDEN_CODE, message="Forbidden")
        granted = token.scopes if token is not None else ()
        scopes = step_up_scopes(decision.scopes, granted, self.known_scopes())
        return MCPError(code=FORBIDDEN_CODE, message="Insufficient scope", data={"scope": " ".join(scopes)})
