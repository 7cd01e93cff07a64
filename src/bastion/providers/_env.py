"""What each provider reads from the environment: its ``BASTION_AUTH`` value and its variables.

A provider declares them in its own class (``env``) and registers itself with
:func:`register`; ``bastion.from_env()`` finds it by its ``BASTION_AUTH`` value and
builds it from ``BASTION_<PROVIDER>_<SUFFIX>`` variables. With

.. code-block:: python

    @register
    class Acme(OAuthProxy):
        env: ClassVar[ProviderEnv] = ProviderEnv("acme", (Setting("domain", "DOMAIN", required=True), *client()))

``BASTION_AUTH=acme`` gives ``Acme`` the keyword arguments ``domain``, ``client_id``,
``client_secret`` and ``scopes`` from ``BASTION_ACME_DOMAIN``, ``BASTION_ACME_CLIENT_ID``,
``BASTION_ACME_CLIENT_SECRET`` and ``BASTION_ACME_SCOPES``, with ``base_url``,
``mcp_scopes``, ``store`` and ``encryption_keys`` from the variables of every proxy.
The built-in providers register when :mod:`bastion.providers` imports their modules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, TypeVar

from bastion._core.errors import ConfigurationError

if TYPE_CHECKING:
    from bastion.proxy._proxy import OAuthProxy

__all__ = ["PROVIDERS", "Provider", "ProviderEnv", "Setting", "client", "register"]

Kind = Literal["text", "secret", "url", "list"]
_NAME = re.compile(r"[a-z][a-z0-9]*")
_SUFFIX = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*")
_ALIAS = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True)
class Setting:
    """One keyword argument of a provider, read from ``BASTION_<PROVIDER>_<SUFFIX>``.

    Attributes:
        argument: The provider's keyword argument.
        suffix: The variable's name after ``BASTION_<PROVIDER>_`` (``CLIENT_ID``).
        kind: ``text``, ``secret`` (never shown), ``url`` (an absolute http(s) URL) or
            ``list`` (space- or comma-separated).
        required: Whether the provider cannot do without it.
    """

    argument: str
    suffix: str
    kind: Kind = "text"
    required: bool = False


@dataclass(frozen=True)
class ProviderEnv:
    """How ``BASTION_AUTH=<name>`` builds a provider.

    Attributes:
        name: The ``BASTION_AUTH`` value (lower case); in capitals, the prefix of its variables.
        settings: The keyword arguments read from variables.
        aliases: Other ``BASTION_AUTH`` values meaning this provider (``entraid``).

    Raises:
        ConfigurationError: a name, suffix or argument is malformed or given twice.
    """

    name: str
    settings: tuple[Setting, ...]
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise ConfigurationError(f"provider name {self.name!r}: lower-case letters and digits only")
        if not all(_ALIAS.fullmatch(alias) for alias in self.aliases):
            raise ConfigurationError(f"{self.name}: aliases are lower case")
        for what, values in (
            ("argument", [s.argument for s in self.settings]),
            ("suffix", [s.suffix for s in self.settings]),
        ):
            if len(set(values)) != len(values):
                raise ConfigurationError(f"{self.name}: an {what} is declared twice")
        bad = [s.suffix for s in self.settings if not _SUFFIX.fullmatch(s.suffix)]
        if bad:
            raise ConfigurationError(f"{self.name}: variable suffixes are upper case (got {bad})")

    def variable(self, setting: Setting) -> str:
        """The environment variable of ``setting``, e.g. ``BASTION_GOOGLE_CLIENT_ID``."""
        return f"BASTION_{self.name.upper()}_{setting.suffix}"

    @property
    def variables(self) -> tuple[str, ...]:
        """Every variable this provider reads, besides those of every proxy (``BASTION_BASE_URL``...)."""
        return tuple(self.variable(s) for s in self.settings)


def client(*, secret_required: bool = True) -> tuple[Setting, ...]:
    """The proxy's registration at the provider: ``CLIENT_ID``, ``CLIENT_SECRET`` and ``SCOPES``."""
    return (
        Setting("client_id", "CLIENT_ID", required=True),
        Setting("client_secret", "CLIENT_SECRET", "secret", required=secret_required),
        Setting("scopes", "SCOPES", "list"),
    )


@dataclass(frozen=True)
class Provider:
    """A registered provider: its declaration and the class built from it."""

    env: ProviderEnv
    cls: type[OAuthProxy]


#: Every registered provider by its ``BASTION_AUTH`` value, in the order of registration.
PROVIDERS: dict[str, Provider] = {}

_P = TypeVar("_P", bound="type[OAuthProxy]")


def register(cls: _P) -> _P:
    """Class decorator: ``BASTION_AUTH=<cls.env.name>`` builds ``cls`` from its variables.

    Raises:
        TypeError: ``cls`` declares no ``env`` of its own.
        ConfigurationError: its name or an alias is already another provider's.
    """
    env = cls.__dict__.get("env")
    if not isinstance(env, ProviderEnv):
        raise TypeError(f"{cls.__name__} declares no env: ClassVar[ProviderEnv]")
    taken = {name for p in PROVIDERS.values() for name in (p.env.name, *p.env.aliases)}
    clash = taken.intersection((env.name, *env.aliases))
    if clash:
        raise ConfigurationError(f"BASTION_AUTH={min(clash)} is already another provider's")
    PROVIDERS[env.name] = Provider(env, cls)
    return cls
