"""The resource server (RFC 6750, RFC 9728): verifiers, tokens, policies, challenges, the ASGI middleware."""
