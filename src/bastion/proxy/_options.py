"""The keyword arguments an :class:`~bastion.proxy.OAuthProxy` and the providers pass on, typed.

Every provider takes ``**options: Unpack[ProxyOptions]``, which go to
:class:`~bastion.proxy.OAuthProxy`; it takes ``**options: Unpack[ServerOptions]``,
which go to :class:`~bastion.AuthorizationServer`. A misspelt option is a type error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from typing import TypedDict

from bastion.authserver._branding import Branding
from bastion.authserver._models import Client, User
from bastion.authserver._settings import DPoPSettings, Registration, Signing, TokenLifetimes
from bastion.storage import Store

__all__ = ["ProxyOptions", "ServerOptions"]


class ServerOptions(TypedDict, total=False):
    """The :class:`~bastion.AuthorizationServer` arguments a proxy passes on.

    All but ``issuer`` (the proxy's ``base_url``), ``users`` and ``login`` (the
    provider signs users in) and ``scopes`` (an argument of the proxy; a provider's
    ``mcp_scopes``). Their meaning is documented on ``AuthorizationServer``.
    """

    store: Store | None
    default_scopes: Sequence[str] | None
    clients: Iterable[Client] | str | PathLike[str] | None
    resources: Sequence[str]
    lifetimes: TokenLifetimes | None
    registration: Registration | None
    signing: Signing | None
    dpop: DPoPSettings | None
    branding: Branding | None
    identity_assertion_issuers: Mapping[str, str] | None
    auto_approve: User | str | None
    clock: Callable[[], float]


class ProxyOptions(ServerOptions, total=False):
    """What every provider of :mod:`bastion.providers` passes on: the above and the proxy's own."""

    callback_path: str
    encryption_keys: str | Sequence[str] | None
    upstream_timeout: float
