"""The frame every browser page shares: the service's name and logo, the stylesheet, the support link, the CSP.

A :class:`Look` is what a server's :class:`~bastion.authserver.Branding` becomes on
a page. The one stylesheet is inline, with the accent colours written into it, and
allowed by its hash in the page's Content-Security-Policy, so the policy needs no
``'unsafe-inline'``; the logo's origin is the only image source. No page runs a
script: everything (the "details" of an error, the forms) is plain HTML.

Every value that comes from a request, a client registration, a user record or the
branding is escaped with :func:`html.escape` where it is placed.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from bastion.authserver._branding import PAGE_GREY, Branding

if TYPE_CHECKING:
    from bastion.authserver._server import AuthorizationServer

__all__ = ["BASE_POLICY", "Look", "document", "hidden", "look_of", "plain_look", "support_link"]

#: The policy of every page and redirect; a page adds its stylesheet's hash and the logo's origin.
BASE_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
_FALLBACK_NAME = "this service"

# Colours: ink #1f2328 (15.8:1 on white), muted #57606a (6.4:1), borders #6e7781 (4.5:1):
# text meets WCAG 2.2 AA (1.4.3), and inputs' and buttons' edges 3:1 (1.4.11).
_STYLE = """:root{--accent:@accent@;--on-accent:@on-accent@;--ink:@ink@;color-scheme:light}
*{box-sizing:border-box}
html{-webkit-text-size-adjust:100%;text-size-adjust:100%}
body{margin:0;min-height:100vh;display:flex;flex-direction:column;align-items:center;
font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
font-size:1rem;line-height:1.5;color:#1f2328;background:@grey@}
.brand,main,footer{width:100%;max-width:32rem}
.brand{display:flex;align-items:center;gap:.65rem;padding:2.5rem 1.5rem 1rem}
.brand img{height:2rem;width:auto;max-width:9rem;object-fit:contain}
.brand span{font-size:1.1rem;font-weight:650;overflow-wrap:anywhere}
main{background:#fff;border:1px solid #d0d7de;border-top:4px solid var(--accent);border-radius:12px;
padding:1.75rem 1.75rem 2rem;box-shadow:0 1px 3px rgba(31,35,40,.06),0 8px 24px rgba(31,35,40,.06)}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .75rem;overflow-wrap:anywhere}
h2{font-size:1rem;margin:1.5rem 0 .25rem}
p{margin:.6rem 0}
a{color:var(--ink);text-underline-offset:.15em}
strong{overflow-wrap:anywhere}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.875em;overflow-wrap:anywhere}
.lead{color:#3d444d}
.muted{color:#57606a;font-size:.875rem}
label{display:block;font-weight:600;margin:1.1rem 0 .35rem}
input[type=text],input[type=password]{display:block;width:100%;padding:.7rem .8rem;font:inherit;color:inherit;
background:#fff;border:1px solid #6e7781;border-radius:8px}
:focus-visible{outline:3px solid var(--ink);outline-offset:2px}
input:focus-visible{outline-offset:0;border-color:var(--ink)}
button,.button{display:inline-block;min-height:2.75rem;padding:.6rem 1.25rem;font:inherit;font-weight:600;
text-align:center;text-decoration:none;color:#1f2328;background:#fff;border:1px solid #6e7781;border-radius:8px;
cursor:pointer}
button:hover,.button:hover{background:#f3f4f6}
.primary,.primary:hover{color:var(--on-accent);background:var(--accent);border-color:var(--ink)}
.primary:hover{box-shadow:inset 0 0 0 100vmax rgba(0,0,0,.08)}
.actions{display:flex;flex-wrap:wrap;gap:.75rem;margin-top:1.75rem}
.actions>*{flex:1 1 10rem}
.actions.start>*{flex:0 0 auto}
.danger{color:#b42318;border-color:#b42318}
.danger:hover{background:#fef3f2}
.inline{display:inline}
.linklike{min-height:0;padding:0;border:0;background:none;color:var(--ink);font-weight:400;text-decoration:underline;
text-underline-offset:.15em}
.linklike:hover{background:none}
.account .linklike{font-size:.925rem}
.account{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:.25rem .75rem;
margin:1rem 0;padding:.75rem 1rem;background:#f6f8fa;border-radius:8px}
.scopes{list-style:none;margin:.25rem 0 0;padding:0}
.scopes li{display:flex;flex-wrap:wrap;justify-content:space-between;align-items:baseline;gap:.15rem 1rem;
padding:.65rem 0;border-bottom:1px solid #e5e7eb}
.scopes code{color:#57606a;background:#f3f4f6;padding:.1rem .45rem;border-radius:4px}
.scopes li:last-child{border-bottom:0}
.scopes li>div{flex:1 1 14rem}
.scopes strong,.scopes span{display:block}
.facts{display:grid;grid-template-columns:max-content 1fr;gap:.35rem 1rem;margin:.75rem 0 0;padding:1rem 0 0;
border-top:1px solid #e5e7eb;font-size:.925rem}
.facts dt{color:#57606a}
.facts dd{margin:0;overflow-wrap:anywhere}
.check{display:flex;gap:.65rem;align-items:flex-start;margin-top:1.5rem}
.check input{flex:none;width:1.2rem;height:1.2rem;margin:.15rem 0 0;accent-color:var(--accent)}
.check label{margin:0;font-weight:600}
.check p{margin:.15rem 0 0}
.box{margin:1rem 0;padding:.75rem 1rem;border-radius:8px;border-left:4px solid}
.warning{background:#fff8e6;border-color:#9a6700}
.error{background:#fff0f1;border-color:#c21c2c}
.notice{background:#eefbf1;border-color:#1a7f37}
.app{margin:1.5rem 0 0;padding:1.25rem 0 0;border-top:1px solid #e5e7eb}
.app h2{margin-top:0;font-size:1.125rem}
details{margin-top:1.5rem;font-size:.875rem;color:#57606a}
summary{cursor:pointer}
footer{padding:1.25rem 1.5rem 2.5rem;text-align:center;font-size:.875rem;color:#57606a}
@media (max-width:34rem){.brand{padding:1.25rem 1rem .75rem}
main{border-left:0;border-right:0;border-radius:0;padding:1.5rem 1rem 1.75rem;box-shadow:none}
h1{font-size:1.3rem}.actions>*{flex-basis:100%}.actions.start>*{flex:1 1 100%}
.facts{grid-template-columns:1fr;gap:0}.facts dd{margin-bottom:.4rem}}
"""


@dataclass(frozen=True)
class Look:
    """A server's branding as its pages use it: names resolved, the stylesheet written, the CSP made."""

    service_name: str
    logo_url: str | None
    support_url: str | None
    style: str
    content_security_policy: str


@lru_cache(maxsize=64)
def _look(branding: Branding, service_name: str) -> Look:
    style = (
        _STYLE.replace("@accent@", branding.accent_color)
        .replace("@on-accent@", branding.on_accent)
        .replace("@ink@", branding.accent_ink)
        .replace("@grey@", PAGE_GREY)
    )
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    policy = f"{BASE_POLICY}; style-src 'sha256-{digest}'"
    if branding.logo_origin is not None:
        policy += f"; img-src {branding.logo_origin}"
    return Look(service_name, branding.logo_url, branding.support_url, style, policy)


def look_of(server: AuthorizationServer) -> Look:
    """The look of ``server``'s pages: its branding; the service named by it, else by the issuer's host."""
    branding = server.branding
    name = branding.service_name
    if name is None and server.issuer is not None:
        name = urlsplit(server.issuer).hostname
    return _look(branding, name or _FALLBACK_NAME)


def plain_look() -> Look:
    """The look of a page rendered without its server (a login step's own error page)."""
    return _look(Branding(), _FALLBACK_NAME)


def hidden(name: str, value: str) -> str:
    """A hidden form field."""
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def support_link(look: Look, text: str = "Contact support") -> str:
    """A link to the service's support, or nothing when it has none."""
    if look.support_url is None:
        return ""
    return f'<a href="{escape(look.support_url)}">{escape(text)}</a>'


def document(look: Look, title: str, body: str) -> str:
    """A whole page: the service's name and logo above ``body``, its support link below."""
    logo = f'<img src="{escape(look.logo_url)}" alt="">' if look.logo_url else ""
    help_link = support_link(look, "Need help? Contact support")
    footer = f"<footer>\n<p>{help_link}</p>\n</footer>\n" if help_link else ""
    name = escape(look.service_name)
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)} &ndash; {name}</title>\n<style>{look.style}</style>\n</head>\n<body>\n"
        f'<header class="brand">{logo}<span>{name}</span></header>\n'
        f"<main>\n{body}\n</main>\n{footer}</body>\n</html>\n"
    )
