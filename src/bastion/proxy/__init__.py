"""The OAuth proxy: bastion's authorization server signing users in at an upstream identity provider.

Use a ready-made provider from :mod:`bastion.providers`, or describe one with
:class:`Upstream` and give it to :class:`OAuthProxy`.
"""

from bastion.proxy._proxy import OAuthProxy
from bastion.proxy._upstream import Identity, Upstream, UpstreamError, UpstreamTokens

__all__ = ["Identity", "OAuthProxy", "Upstream", "UpstreamError", "UpstreamTokens"]
