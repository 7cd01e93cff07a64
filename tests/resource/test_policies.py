"""Policies and their combinations, evaluated directly."""

from __future__ import annotations

import pytest

from bastion import (
    AccessContext,
    Decision,
    NoAccessToken,
    ScopeHierarchy,
    get_access_token,
    require_all,
    require_any,
    require_auth,
    require_role,
    require_scopes,
)
from bastion._resource.policy import as_policy

from support.notes import principal


def ctx(
    *scopes: str, roles: tuple[str, ...] = (), anonymous: bool = False, hierarchy: dict[str, list[str]] | None = None
) -> AccessContext:
    token = None if anonymous else principal("t", *scopes, roles=roles)
    return AccessContext(token=token, kind="tool", name="x", hierarchy=ScopeHierarchy(hierarchy))


async def test_require_auth() -> None:
    assert (await require_auth.evaluate(ctx())).allowed
    assert await require_auth.evaluate(ctx(anonymous=True)) == Decision(False, None)


async def test_require_scopes_names_every_needed_scope() -> None:
    policy = require_scopes("a", "b")
    assert (await policy.evaluate(ctx("a", "b", "c"))).allowed
    assert await policy.evaluate(ctx("a")) == Decision(False, frozenset({"a", "b"}))
    assert await policy.evaluate(ctx(anonymous=True)) == Decision(False, frozenset({"a", "b"}))


async def test_scope_hierarchy_is_transitive() -> None:
    hierarchy = {"admin": ["write"], "write": ["read"]}
    assert (await require_scopes("read").evaluate(ctx("admin", hierarchy=hierarchy))).allowed
    assert not (await require_scopes("admin").evaluate(ctx("read", hierarchy=hierarchy))).allowed


async def test_require_role_is_not_a_step_up() -> None:
    assert (await require_role("admin", "ops").evaluate(ctx(roles=("ops",)))).allowed
    assert await require_role("admin").evaluate(ctx("admin")) == Decision(False, None)


async def test_require_all_collects_scopes_and_role_denial_wins() -> None:
    policy = require_all(require_scopes("a"), require_scopes("b"))
    assert await policy.evaluate(ctx("a")) == Decision(False, frozenset({"a", "b"}))
    assert (await policy.evaluate(ctx("a", "b"))).allowed
    with_role = require_all(require_scopes("a"), require_role("admin"))
    assert await with_role.evaluate(ctx()) == Decision(False, None)
    assert (await with_role.evaluate(ctx("a", roles=("admin",)))).allowed


async def test_require_any_steps_up_to_the_first_scope_alternative() -> None:
    policy = require_any(require_role("admin"), require_scopes("x"), require_scopes("y"))
    assert (await policy.evaluate(ctx(roles=("admin",)))).allowed
    assert (await policy.evaluate(ctx("y"))).allowed
    assert await policy.evaluate(ctx()) == Decision(False, frozenset({"x"}))


async def test_operators_combine_policies() -> None:
    policy = require_scopes("a") | require_role("admin")
    assert (await policy.evaluate(ctx(roles=("admin",)))).allowed
    both = require_scopes("a") & require_scopes("b")
    assert not (await both.evaluate(ctx("a"))).allowed


async def test_plain_callables_sync_and_async() -> None:
    def weekday_only(c: AccessContext) -> bool:
        return c.token is not None and c.token.subject == "alice"

    async def never(c: AccessContext) -> bool:
        return False

    assert (await as_policy(weekday_only).evaluate(ctx())).allowed
    assert not (await as_policy(never).evaluate(ctx())).allowed
    assert not (await require_any(never).evaluate(ctx())).allowed
    truthy = as_policy(lambda c: 1)  # type: ignore[arg-type,return-value]
    assert not (await truthy.evaluate(ctx())).allowed, "only True allows"


def test_bad_policy_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="scope"):
        require_scopes()
    with pytest.raises(ValueError, match="scope"):
        require_scopes("a b")
    with pytest.raises(ValueError, match="role"):
        require_role()
    with pytest.raises(ValueError, match="policy"):
        require_all()
    with pytest.raises(TypeError):
        as_policy("notes:read")  # type: ignore[arg-type]


def test_get_access_token_outside_a_request_is_a_typed_error() -> None:
    with pytest.raises(NoAccessToken):
        get_access_token()


def test_a_registry_allows_everything_only_when_every_policy_says_so_from_the_token() -> None:
    from bastion import PolicyRegistry

    registry = PolicyRegistry(require_auth, ScopeHierarchy({"admin": ["read", "write"]}))
    registry.set("tool", "read", require_scopes("read"))
    registry.set("tool", "write", require_scopes("write") | require_role("editor"))
    registry.set_resource("notes://{name}", require_all(require_scopes("read"), require_role("staff")))
    assert registry.allows_everything(principal("t", "admin", roles=("staff",)))
    assert not registry.allows_everything(principal("t", "read", roles=("staff",)))
    assert not registry.allows_everything(principal("t", "admin"))
    registry.set("prompt", "p", lambda ctx: True)
    assert not registry.allows_everything(principal("t", "admin", roles=("staff",))), "callables need the request"
