"""Helpers for testing servers protected by bastion.

- :class:`KeyPair`: a signing key that mints access tokens, and its public JWKS.
- :class:`JWKSServer`: a real JWKS endpoint on 127.0.0.1 whose answers a test controls.
- :func:`serve`: run an ASGI app on a real uvicorn server on 127.0.0.1.
"""

from bastion.testing._jwks_server import JWKSServer
from bastion.testing._keys import KeyPair
from bastion.testing._serve import serve

__all__ = ["JWKSServer", "KeyPair", "serve"]
