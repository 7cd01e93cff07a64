"""The public surface is exactly what we mean to publish."""

import bastion
import bastion.authserver
import bastion.client
import bastion.fastapi
import bastion.providers
import bastion.proxy
import bastion.storage
import bastion.testing

EXPECTED = {
    "APIKey", "APIKeyVerifier", "AccessContext", "AccessDenied", "AccessToken", "Audit", "AuditEvent",
    "AuthenticationError",
    "AuthorizationError", "AuthorizationServer", "Client", "MemoryStore", "SQLiteStore", "Store", "User",
    "BastionError", "CallableVerifier", "ClaimNames", "ConfigurationError", "Decision", "DPoPOptions",
    "InsufficientScope", "IntrospectionVerifier", "InvalidAudience", "InvalidClaims", "InvalidIssuer",
    "InvalidSignature", "InvalidToken", "JWKSOptions", "JWTVerifier", "KeysUnavailable", "MCPServer", "MultiVerifier",
    "NoAccessToken", "Policy", "PolicyRegistry", "RemoteAuthorization", "ScopeHierarchy", "ServerSettings",
    "StaticTokenVerifier", "TokenCache", "TokenExpired", "TokenInactive", "TokenNotYetValid", "UnsupportedAlgorithm",
    "UpstreamUnavailable", "Verifier",
    "__version__", "from_env", "get_access_token", "hash_api_key", "instrument", "protect", "require_all",
    "require_any", "require_auth", "require_role", "require_scopes", "server_settings", "uninstrument",
}  # fmt: skip


def test_bastion_exports_exactly_the_intended_names() -> None:
    assert set(bastion.__all__) == EXPECTED
    for name in bastion.__all__:
        assert getattr(bastion, name) is not None


def test_subpackages_export_exactly_the_intended_names() -> None:
    assert set(bastion.testing.__all__) == {
        "HeadlessBrowser", "JWKSServer", "KeyPair", "MemoryTokenStorage", "ProofKey", "dpop_headers", "oauth_client",
        "serve",
    }  # fmt: skip
    assert set(bastion.fastapi.__all__) == {"Bastion"}
    assert set(bastion.client.__all__) == {"DPoPAuth", "ProofKey"}
    assert set(bastion.providers.__all__) == {
        "OIDC", "Auth0", "Cognito", "EntraID", "GitHub", "Google", "Keycloak", "Okta", "WorkOS"
    }  # fmt: skip
    assert set(bastion.proxy.__all__) == {"Identity", "OAuthProxy", "Upstream", "UpstreamError", "UpstreamTokens"}
    assert set(bastion.authserver.__all__) == {
        "AccessDeniedError", "Admin", "AdminError", "AuditStore", "AuthorizationServer", "Client", "ClientInfo",
        "GrantInfo", "SigningKeyInfo", "InvalidClient", "InvalidClientMetadata",
        "InvalidGrant", "InvalidRedirectURI", "InvalidRequest", "InvalidScope", "InvalidTarget", "LoginStep",
        "OAuthError", "PasswordLogin", "RememberedConsent", "SafeFetcher", "UnauthorizedClient",
        "UnsupportedGrantType", "User", "signed_in",
        "Registration", "Signing", "TokenLifetimes", "Branding", "DPoPSettings",
    }  # fmt: skip
    assert set(bastion.storage.__all__) == {
        "MemoryStore",
        "ObservedStore",
        "RedisStore",
        "SQLiteStore",
        "Store",
        "StoreError",
        "open_store",
    }


def test_every_public_name_has_a_docstring() -> None:
    for module in (
        bastion,
        bastion.testing,
        bastion.fastapi,
        bastion.storage,
        bastion.authserver,
        bastion.client,
        bastion.providers,
        bastion.proxy,
    ):
        for name in module.__all__:
            obj = getattr(module, name)
            if callable(obj) and not isinstance(obj, bastion.Policy):
                assert obj.__doc__, f"{module.__name__}.{name} has no docstring"


def test_the_package_is_typed() -> None:
    from importlib.resources import files

    assert files("bastion").joinpath("py.typed").is_file()
