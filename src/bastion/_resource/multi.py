"""Several verifiers tried in order: JWTs and API keys on one server, two issuers, ..."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.requests import HTTPConnection

from bastion._core.errors import AuthenticationError, ConfigurationError, KeysUnavailable
from bastion._resource.tokens import AccessToken
from bastion._resource.verifier import TokenCache, Verifier

__all__ = ["MultiVerifier"]


class MultiVerifier(Verifier):
    """Tries several verifiers in order; the first that accepts the request wins.

    A verifier that refuses the credentials does not end the search: the next
    one may accept them (a JWT verifier refuses an API key that the API key
    verifier accepts). Nor does one that cannot check them now
    (:class:`~bastion.KeysUnavailable`). When none accepts and one could not check,
    that is raised (503: the credentials may be what that verifier would have
    accepted); otherwise the first refusal (401); when none found credentials at
    all, the request has none.

    Each verifier keeps its own cache; this one adds none.

    Args:
        verifiers: The verifiers, in the order they are tried.
    """

    def __init__(self, verifiers: Iterable[Verifier]) -> None:
        super().__init__(cache=TokenCache(max_size=0))
        self._issuers: tuple[str, ...] | None = None
        self.verifiers: tuple[Verifier, ...] = tuple(verifiers)
        if not self.verifiers:
            raise ConfigurationError("MultiVerifier needs at least one verifier")
        for verifier in self.verifiers:
            if not isinstance(verifier, Verifier):
                raise ConfigurationError(f"MultiVerifier takes bastion verifiers, got {type(verifier).__name__}")
        # For the 401 challenge: every verifier's, in order, without repeats.
        self.required_scopes = tuple(dict.fromkeys(s for verifier in self.verifiers for s in verifier.required_scopes))

    def __repr__(self) -> str:
        return f"{type(self).__name__}([{', '.join(map(repr, self.verifiers))}])"

    @property
    def issuers(self) -> Sequence[str]:
        """Every verifier's issuers, in order, without repeats (unless set explicitly)."""
        if self._issuers is not None:
            return self._issuers
        return tuple(dict.fromkeys(issuer for verifier in self.verifiers for issuer in verifier.issuers))

    @issuers.setter
    def issuers(self, issuers: Sequence[str]) -> None:
        self._issuers = tuple(issuers)

    async def authenticate(self, conn: HTTPConnection) -> AccessToken | None:
        """The first access token a verifier finds in the request.

        Raises:
            KeysUnavailable: no verifier accepted, and one could not check the credentials now.
            AuthenticationError: no verifier accepted, and at least one refused (the first refusal).
        """
        first_error: AuthenticationError | None = None
        unavailable: KeysUnavailable | None = None
        for verifier in self.verifiers:
            try:
                access = await verifier.authenticate(conn)
            except AuthenticationError as exc:
                first_error = first_error or exc
                continue
            except KeysUnavailable as exc:
                unavailable = unavailable or exc
                continue
            if access is not None:
                return access
        if unavailable is not None:
            raise unavailable
        if first_error is not None:
            raise first_error
        return None

    async def check(self, token: str) -> AccessToken:
        """The first verifier's access token for a bearer token (each with its own cache).

        Raises:
            KeysUnavailable: none accepted it, and one could not check it now.
            AuthenticationError: every verifier refused it (the first refusal).
        """
        first_error: AuthenticationError | None = None
        unavailable: KeysUnavailable | None = None
        for verifier in self.verifiers:
            try:
                return await verifier.verify(token)
            except AuthenticationError as exc:
                first_error = first_error or exc
            except KeysUnavailable as exc:
                unavailable = unavailable or exc
        if unavailable is not None:
            raise unavailable
        assert first_error is not None
        raise first_error

    async def ready(self) -> bool:
        """Whether every verifier is ready (each one configured is expected to work)."""
        for verifier in self.verifiers:
            if not await verifier.ready():
                return False
        return True

    def expect_audience(self, audience: str) -> None:
        """Pass the server's resource URL to every verifier."""
        for verifier in self.verifiers:
            verifier.expect_audience(audience)

    async def aclose(self) -> None:
        """Close every verifier, even when one fails to close; the first failure is raised."""
        failure: BaseException | None = None
        for verifier in self.verifiers:
            try:
                await verifier.aclose()
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
