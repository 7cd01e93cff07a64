"""Helpers for testing servers protected by bastion.

- :class:`KeyPair`: a signing key that mints access tokens (bound to a DPoP key with
  ``bound_to=``), and its public JWKS.
- :class:`ProofKey` and :func:`dpop_headers`: a client's DPoP key, and the headers of one
  request with a DPoP-bound token and a fresh proof.
- :class:`JWKSServer`: a real JWKS endpoint on 127.0.0.1 whose answers a test controls.
- :func:`serve`: run an ASGI app on a real uvicorn server on 127.0.0.1.
- :func:`oauth_client`, :class:`HeadlessBrowser`, :class:`MemoryTokenStorage`: the
  SDK's OAuth client, driven without a person against an authorization server
  that approves without pages (``auto_approve``).
"""

from bastion._jose.proof_key import ProofKey
from bastion.testing._dpop import dpop_headers
from bastion.testing._jwks_server import JWKSServer
from bastion.testing._keys import KeyPair
from bastion.testing._oauth import HeadlessBrowser, MemoryTokenStorage, oauth_client
from bastion.testing._serve import serve

__all__ = [
    "HeadlessBrowser",
    "JWKSServer",
    "KeyPair",
    "MemoryTokenStorage",
    "ProofKey",
    "dpop_headers",
    "oauth_client",
    "serve",
]
