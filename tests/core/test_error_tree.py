"""One error model: every exception class bastion defines is a BastionError, drawn in the tree."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from collections.abc import Callable

import pytest

import bastion
from bastion import BastionError, ConfigurationError
from bastion._core import errors


def _error_classes() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(bastion.__path__, "bastion."):
        module = importlib.import_module(module_info.name)
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module.__name__:
                found[f"{module.__name__}.{name}"] = value
    return found


def test_every_error_bastion_defines_is_a_bastion_error() -> None:
    classes = _error_classes()
    assert "bastion._core.http.FetchError" in classes  # the walk reaches the inner modules
    outside = sorted(where for where, cls in classes.items() if not issubclass(cls, BastionError))
    assert outside == []


def test_the_tree_in_the_errors_module_draws_every_error() -> None:
    drawing = errors.__doc__ or ""
    # The drawing's lines: indented, a class name after the tree's branches (``|``, ``+--``).
    drawn = {match[1] for line in drawing.splitlines() if (match := re.match(r" +[|+\- ]*([A-Z]\w+)", line))}
    missing = sorted(where for where, cls in _error_classes().items() if cls.__name__ not in drawn)
    assert missing == []


def test_a_refused_fetch_and_a_refused_browser_step_are_still_caught_as_before() -> None:
    from bastion._core.http import FetchError
    from bastion._resource.jsonrpc import BodyTooLarge
    from bastion.authserver._browser.flows import FlowRefused

    refused = FlowRefused("This sign-in cannot go on.", 400)
    assert (refused.message, refused.status) == ("This sign-in cannot go on.", 400)
    assert refused.description == refused.message
    fetch = FetchError("example.com answered HTTP 500", status=500, transient=True)
    assert (str(fetch), fetch.status, fetch.transient) == ("example.com answered HTTP 500", 500, True)
    assert "example.com" not in fetch.description
    assert isinstance(BodyTooLarge(), BastionError)


def _mistakes() -> list[Callable[[], object]]:
    from bastion import TokenCache, require_all, require_any, require_role, require_scopes
    from bastion.authserver import User
    from bastion.authserver._ratelimit import RateLimiter
    from bastion.providers._env import ProviderEnv
    from bastion.storage import MemoryStore
    from bastion.testing import KeyPair

    return [
        lambda: require_scopes(),
        lambda: require_scopes("two words"),
        lambda: require_role(),
        lambda: require_all(),
        lambda: require_any(),
        lambda: TokenCache(max_size=-1),
        lambda: User(""),
        lambda: RateLimiter(MemoryStore(), "register", limit=-1),
        lambda: KeyPair.generate("HS1"),
        lambda: ProviderEnv("Not-Lower", ()),
    ]


@pytest.mark.parametrize("case", range(len(_mistakes())))
def test_a_construction_mistake_is_a_configuration_error_and_still_a_value_error(case: int) -> None:
    with pytest.raises(ConfigurationError) as caught:
        _mistakes()[case]()
    assert isinstance(caught.value, ValueError)
