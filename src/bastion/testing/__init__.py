"""Helpers for testing servers protected by bastion.

- :func:`serve`: run an ASGI app on a real uvicorn server on 127.0.0.1.
"""

from bastion.testing._serve import serve

__all__ = ["serve"]
