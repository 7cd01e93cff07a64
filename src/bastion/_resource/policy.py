"""Access policies: who may call a tool, read a resource, get a prompt or use a route.

A policy is evaluated against an :class:`AccessContext` and returns a
:class:`Decision`. A denial that more scope would lift names those scopes, so the
HTTP layer can answer with an RFC 6750 ``insufficient_scope`` step-up challenge;
any other denial is plain ``forbidden``.

Plain callables work as policies too: ``def policy(ctx: AccessContext) -> bool``,
sync or async.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from starlette.requests import HTTPConnection

from bastion._core.errors import ConfigurationError
from bastion._resource.tokens import AccessToken

__all__ = [
    "AccessContext",
    "Decision",
    "Policy",
    "PolicyLike",
    "ScopeHierarchy",
    "as_policy",
    "require_all",
    "require_any",
    "require_auth",
    "require_role",
    "require_scopes",
]

TargetKind = Literal["tool", "resource", "prompt", "route", "request"]


class ScopeHierarchy:
    """Which scopes imply which: ``{"notes:admin": ["notes:read", "notes:write"]}``.

    Implication is transitive. A token holding ``notes:admin`` then satisfies a
    policy that needs ``notes:read``.
    """

    def __init__(self, implies: Mapping[str, Iterable[str]] | None = None) -> None:
        self._implies = {scope: tuple(children) for scope, children in (implies or {}).items()}
        self._closures: dict[frozenset[str], frozenset[str]] = {}

    def __bool__(self) -> bool:
        return bool(self._implies)

    def scopes(self) -> frozenset[str]:
        """Every scope the hierarchy names, implying or implied."""
        return frozenset(self._implies).union(*self._implies.values())

    def expand(self, scopes: Iterable[str]) -> frozenset[str]:
        """Every scope the given ones grant, directly or by implication."""
        granted = frozenset(scopes)
        if not self._implies:
            return granted
        closure = self._closures.get(granted)
        if closure is None:
            seen = set(granted)
            stack = list(granted)
            while stack:
                for child in self._implies.get(stack.pop(), ()):
                    if child not in seen:
                        seen.add(child)
                        stack.append(child)
            closure = frozenset(seen)
            if len(self._closures) < 4096:
                self._closures[granted] = closure
        return closure


_NO_HIERARCHY = ScopeHierarchy()


@dataclass(frozen=True)
class AccessContext:
    """What a policy sees.

    Attributes:
        token: The verified access token, or ``None`` for an anonymous caller.
        kind: What is being accessed: ``tool``, ``resource``, ``prompt``, ``route``
            or ``request`` (the MCP endpoint as a whole).
        name: The tool or prompt name, resource URI or route path.
        request: The HTTP request, where there is one.
        hierarchy: The server's scope hierarchy.
    """

    token: AccessToken | None
    kind: TargetKind = "request"
    name: str = ""
    request: HTTPConnection | None = None
    hierarchy: ScopeHierarchy = field(default=_NO_HIERARCHY, repr=False)

    @property
    def scopes(self) -> frozenset[str]:
        """The scopes the token grants, hierarchy included (empty when anonymous)."""
        if self.token is None:
            return frozenset()
        return self.hierarchy.expand(self.token.scopes)

    @property
    def roles(self) -> frozenset[str]:
        """The roles the token grants (empty when anonymous)."""
        return frozenset(self.token.roles) if self.token is not None else frozenset()


@dataclass(frozen=True)
class Decision:
    """The result of a policy.

    Attributes:
        allowed: Whether the access is allowed.
        scopes: On a denial that more scope would lift, every scope the operation
            needs; ``None`` when no scope would help.
    """

    allowed: bool
    scopes: frozenset[str] | None = None

    @staticmethod
    def allow() -> Decision:
        """An allowing decision."""
        return _ALLOW

    @staticmethod
    def deny(scopes: Iterable[str] | None = None) -> Decision:
        """A denial; with ``scopes`` a step-up naming what the operation needs."""
        return Decision(False, None if scopes is None else frozenset(scopes))


_ALLOW = Decision(True)
_DENY = Decision(False)


class Policy:
    """Base class of the built-in policies; subclasses implement :meth:`evaluate`."""

    async def evaluate(self, ctx: AccessContext) -> Decision:
        """Decide on one access."""
        raise NotImplementedError

    def scopes(self) -> frozenset[str]:
        """Every scope this policy can ask for (for ``scopes_supported``)."""
        return frozenset()

    def decide_token(self, token: AccessToken | None, hierarchy: ScopeHierarchy) -> Decision | None:
        """A decision from the token alone, or ``None`` when the full context is needed.

        A shortcut for the hot path: policies that look only at the token answer here
        without an :class:`AccessContext` being built.
        """
        return None

    def __and__(self, other: PolicyLike) -> Policy:
        return require_all(self, other)

    def __or__(self, other: PolicyLike) -> Policy:
        return require_any(self, other)


PolicyFunction: TypeAlias = Callable[[AccessContext], "bool | Decision | Awaitable[bool | Decision]"]
PolicyLike: TypeAlias = "Policy | PolicyFunction"


class _RequireAuth(Policy):
    async def evaluate(self, ctx: AccessContext) -> Decision:
        return _ALLOW if ctx.token is not None else _DENY

    def decide_token(self, token: AccessToken | None, hierarchy: ScopeHierarchy) -> Decision:
        return _ALLOW if token is not None else _DENY

    def __repr__(self) -> str:
        return "require_auth"


#: Allow any authenticated caller.
require_auth: Policy = _RequireAuth()


class _RequireScopes(Policy):
    def __init__(self, scopes: tuple[str, ...]) -> None:
        self._scopes = frozenset(scopes)
        self._denial = Decision(False, self._scopes)

    async def evaluate(self, ctx: AccessContext) -> Decision:
        return self.decide_token(ctx.token, ctx.hierarchy)

    def decide_token(self, token: AccessToken | None, hierarchy: ScopeHierarchy) -> Decision:
        if token is not None and self._scopes <= hierarchy.expand(token.scopes):
            return _ALLOW
        return self._denial

    def scopes(self) -> frozenset[str]:
        return self._scopes

    def __repr__(self) -> str:
        return f"require_scopes({', '.join(sorted(self._scopes))})"


def require_scopes(*scopes: str) -> Policy:
    """Allow a caller whose token grants every one of ``scopes`` (hierarchy included)."""
    if not scopes or not all(isinstance(s, str) and s and " " not in s for s in scopes):
        raise ConfigurationError("require_scopes needs one or more scope names without spaces")
    return _RequireScopes(scopes)


class _RequireRole(Policy):
    def __init__(self, roles: frozenset[str]) -> None:
        self._roles = roles

    async def evaluate(self, ctx: AccessContext) -> Decision:
        return self.decide_token(ctx.token, ctx.hierarchy)

    def decide_token(self, token: AccessToken | None, hierarchy: ScopeHierarchy) -> Decision:
        return _ALLOW if token is not None and not self._roles.isdisjoint(token.roles) else _DENY

    def __repr__(self) -> str:
        return f"require_role({', '.join(sorted(self._roles))})"


def require_role(*roles: str) -> Policy:
    """Allow a caller whose token carries at least one of ``roles``."""
    if not roles or not all(isinstance(r, str) and r for r in roles):
        raise ConfigurationError("require_role needs one or more role names")
    return _RequireRole(frozenset(roles))


class _Function(Policy):
    def __init__(self, fn: PolicyFunction) -> None:
        self._fn = fn

    async def evaluate(self, ctx: AccessContext) -> Decision:
        result = self._fn(ctx)
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, Decision):
            return result
        return _ALLOW if result is True else _DENY

    def __repr__(self) -> str:
        return getattr(self._fn, "__qualname__", repr(self._fn))


def as_policy(policy: PolicyLike) -> Policy:
    """A :class:`Policy` from a policy or a plain ``(AccessContext) -> bool`` callable."""
    if isinstance(policy, Policy):
        return policy
    if callable(policy):
        return _Function(policy)
    raise TypeError(f"not a policy: {policy!r}")


class _All(Policy):
    def __init__(self, parts: tuple[Policy, ...]) -> None:
        self._parts = parts

    async def evaluate(self, ctx: AccessContext) -> Decision:
        denied = False
        for part in self._parts:
            decision = await part.evaluate(ctx)
            if decision.allowed:
                continue
            denied = True
            if decision.scopes is None:
                # Scope cannot lift this denial, so a step-up would be a lie.
                return _DENY
        if not denied:
            return _ALLOW
        # Name every scope the operation needs, not only the missing ones.
        return Decision(False, self.scopes())

    def scopes(self) -> frozenset[str]:
        return frozenset().union(*(p.scopes() for p in self._parts))

    def decide_token(self, token: AccessToken | None, hierarchy: ScopeHierarchy) -> Decision | None:
        for part in self._parts:
            quick = part.decide_token(token, hierarchy)
            if quick is None or not quick.allowed:
                return None  # a denial's scopes are evaluate()'s to gather
        return _ALLOW

    def __repr__(self) -> str:
        return f"require_all({', '.join(map(repr, self._parts))})"


class _Any(Policy):
    def __init__(self, parts: tuple[Policy, ...]) -> None:
        self._parts = parts

    async def evaluate(self, ctx: AccessContext) -> Decision:
        step_up: frozenset[str] | None = None
        for part in self._parts:
            decision = await part.evaluate(ctx)
            if decision.allowed:
                return _ALLOW
            if step_up is None and decision.scopes is not None:
                # The first alternative that scope can satisfy is the one to ask for.
                step_up = decision.scopes
        return Decision(False, step_up)

    def scopes(self) -> frozenset[str]:
        return frozenset().union(*(p.scopes() for p in self._parts))

    def decide_token(self, token: AccessToken | None, hierarchy: ScopeHierarchy) -> Decision | None:
        for part in self._parts:
            quick = part.decide_token(token, hierarchy)
            if quick is not None and quick.allowed:
                return _ALLOW
        return None

    def __repr__(self) -> str:
        return f"require_any({', '.join(map(repr, self._parts))})"


def require_all(*policies: PolicyLike) -> Policy:
    """Allow only when every one of ``policies`` allows."""
    if not policies:
        raise ConfigurationError("require_all needs at least one policy")
    return _All(tuple(as_policy(p) for p in policies))


def require_any(*policies: PolicyLike) -> Policy:
    """Allow when at least one of ``policies`` allows."""
    if not policies:
        raise ConfigurationError("require_any needs at least one policy")
    return _Any(tuple(as_policy(p) for p in policies))
