"""One registry of policies, read by the HTTP step-up check and by list filtering alike."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from mcp.shared.uri_template import UriTemplate
from starlette.requests import HTTPConnection

from bastion._resource.policy import (
    AccessContext,
    Decision,
    Policy,
    PolicyLike,
    ScopeHierarchy,
    TargetKind,
    as_policy,
    require_auth,
)
from bastion._resource.tokens import AccessToken

__all__ = ["PolicyRegistry"]

#: Past this many policies, finding the target in the body is cheaper than asking them all.
_MAX_POLICIES_SCANNED = 32


@dataclass(frozen=True)
class _Template:
    template: UriTemplate
    policy: Policy


class PolicyRegistry:
    """The policies of a server's tools, resources, prompts and routes.

    Anything registered without a policy of its own gets ``default``.
    """

    def __init__(self, default: PolicyLike = require_auth, hierarchy: ScopeHierarchy | None = None) -> None:
        self.default = as_policy(default)
        self.hierarchy = hierarchy or ScopeHierarchy()
        self._named: dict[tuple[TargetKind, str], Policy] = {}
        self._templates: dict[str, _Template] = {}
        self._elsewhere: set[str] = set()
        self._changes = 0

    @property
    def version(self) -> tuple[int, int, int]:
        """Changes whenever a decision could: a policy set or removed, another default or hierarchy.

        For those that remember a decision per token (:meth:`allows_everything`) within one version.
        """
        return (self._changes, id(self.default), id(self.hierarchy))

    def set(self, kind: TargetKind, name: str, policy: PolicyLike | None) -> None:
        """Give the tool, prompt, route or static resource ``name`` its policy."""
        self._changes += 1
        if policy is None:
            self._named.pop((kind, name), None)
        else:
            self._named[(kind, name)] = as_policy(policy)

    def add_scopes(self, scopes: Iterable[str]) -> None:
        """Count scopes that policies outside the registry use (guarded routes, FastAPI
        dependencies) in :meth:`scopes`."""
        self._elsewhere.update(scopes)

    def set_resource(self, uri: str, policy: PolicyLike | None) -> None:
        """Give a resource, or a resource template (RFC 6570), its policy."""
        self._changes += 1
        if UriTemplate.is_template(uri):
            if policy is None:
                self._templates.pop(uri, None)
            else:
                self._templates[uri] = _Template(UriTemplate.parse(uri), as_policy(policy))
        else:
            self.set("resource", uri, policy)

    def policy_for(self, kind: TargetKind, name: str) -> Policy:
        """The policy that governs one target (the default when it has none)."""
        policy = self._named.get((kind, name))
        if policy is not None:
            return policy
        if kind == "resource":
            template = self._templates.get(name)
            if template is not None:
                return template.policy
            for entry in self._templates.values():
                if entry.template.match(name) is not None:
                    return entry.policy
        return self.default

    async def decide(
        self, kind: TargetKind, name: str, token: AccessToken | None, request: HTTPConnection | None = None
    ) -> Decision:
        """Evaluate the policy of one target for one caller."""
        return await self.evaluate(self.policy_for(kind, name), kind, name, token, request)

    async def evaluate(
        self,
        policy: Policy,
        kind: TargetKind,
        name: str,
        token: AccessToken | None,
        request: HTTPConnection | None = None,
    ) -> Decision:
        """Evaluate ``policy`` with this registry's scope hierarchy (token-only policies first, cheaply)."""
        quick = policy.decide_token(token, self.hierarchy)
        if quick is not None:
            return quick
        ctx = AccessContext(token=token, kind=kind, name=name, request=request, hierarchy=self.hierarchy)
        return await policy.evaluate(ctx)

    def allows_everything(self, token: AccessToken) -> bool:
        """Whether ``token`` may use every tool, resource and prompt, judged from the token alone.

        When it may, the HTTP layer need not read the request body to find the target.
        Policies that need the request (custom callables) make this ``False``.
        """
        policies = [self.default, *self._named.values(), *(t.policy for t in self._templates.values())]
        if len(policies) > _MAX_POLICIES_SCANNED:
            return False
        for policy in policies:
            quick = policy.decide_token(token, self.hierarchy)
            if quick is None or not quick.allowed:
                return False
        return True

    def scopes(self) -> list[str]:
        """Every scope any registered policy can ask for, sorted: the minimal ``scopes_supported``."""
        policies: Iterable[Policy] = [self.default, *self._named.values()]
        found = set(self._elsewhere)
        for policy in [*policies, *(t.policy for t in self._templates.values())]:
            found |= policy.scopes()
        return sorted(found)
