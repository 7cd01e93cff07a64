"""The HTML of the login, consent, consents list and error pages: plain, accessible, no JavaScript.

Every value that comes from a request, a client registration or a user record is
escaped with :func:`html.escape` where it is placed. The one stylesheet is
inline, and allowed by its hash in the pages' Content-Security-Policy
(:data:`STYLE_HASH`), so the policy needs no ``'unsafe-inline'``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = [
    "STYLE",
    "STYLE_HASH",
    "ConsentEntry",
    "ConsentView",
    "ConsentsView",
    "consent_page",
    "consents_page",
    "error_page",
    "login_page",
]

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;"
    "line-height:1.5;color:#1b1b1b;background:#fff}"
    "h1{font-size:1.4rem}label{display:block;margin-top:.8rem;font-weight:600}"
    "input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}"
    "button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem;font-size:1rem}"
    ".warning{border-left:4px solid #b35900;background:#fff4e5;padding:.5rem 1rem}"
    ".error{border-left:4px solid #b00020;background:#fdecee;padding:.5rem 1rem}"
    "code{word-break:break-all}label.inline{display:inline;font-weight:400}"
)
#: The CSP source that allows :data:`STYLE` and nothing else.
STYLE_HASH = "'sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode() + "'"


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def error_page(title: str, message: str, *, link: tuple[str, str] | None = None) -> str:
    """A page that explains why the request cannot go on; ``link`` is an ``(href, text)`` to go on from."""
    body = f'<h1>{escape(title)}</h1>\n<p class="error">{escape(message)}</p>'
    if link is not None:
        body += f'\n<p><a href="{escape(link[0])}">{escape(link[1])}</a></p>'
    return _document(title, body)


def login_page(
    *,
    action: str,
    flow_id: str,
    csrf: str,
    client_name: str,
    username: str = "",
    error: str | None = None,
    max_username: int = 256,
    max_password: int = 1024,
) -> str:
    """The username and password form of the built-in login step."""
    alert = f'<p class="error" role="alert">{escape(error)}</p>\n' if error else ""
    body = (
        "<h1>Sign in</h1>\n"
        f"<p>Sign in to continue to <strong>{escape(client_name)}</strong>.</p>\n"
        f"{alert}"
        f'<form method="post" action="{escape(action)}">\n'
        f"{_hidden('flow', flow_id)}\n{_hidden('csrf', csrf)}\n"
        '<label for="username">Username</label>\n'
        f'<input type="text" id="username" name="username" value="{escape(username)}" '
        f'autocomplete="username" maxlength="{max_username}" required autofocus>\n'
        '<label for="password">Password</label>\n'
        f'<input type="password" id="password" name="password" autocomplete="current-password" '
        f'maxlength="{max_password}" required>\n'
        '<button type="submit">Sign in</button>\n'
        "</form>"
    )
    return _document("Sign in", body)


@dataclass(frozen=True)
class ConsentView:
    """What the consent page shows."""

    action: str
    flow_id: str
    csrf: str
    client_name: str
    #: The client id, shown when it is a URL (a Client ID Metadata Document): it is what the user can verify.
    client_url: str | None
    redirect_host: str
    user_name: str
    #: ``(scope, description)`` pairs.
    scopes: Sequence[tuple[str, str]]
    resource: str
    localhost_only: bool
    #: The page where the user can withdraw a remembered consent, mentioned next to "Remember".
    consents_url: str | None = None
    #: The identity provider the user signs in with after approving (the proxy asks first), if any.
    provider: str | None = None


def _remember(name: str, withdraw_later: str) -> str:
    return (
        '<p><input type="checkbox" id="remember" name="remember" value="yes">\n'
        f'<label for="remember" class="inline">Remember my decision for {name}</label></p>\n'
        f"{withdraw_later}"
    )


def consent_page(view: ConsentView) -> str:
    """The page where the signed-in user approves or denies a client's request."""
    name = escape(view.client_name)
    parts = [f"<h1>Allow {name} to access your account?</h1>"]
    if view.client_url:
        url = escape(view.client_url)
        parts.append(f"<p>Application: <strong>{name}</strong>, identified by <code>{url}</code></p>")
    if view.provider:
        parts.append(f"<p>If you allow it, you will sign in with <strong>{escape(view.provider)}</strong> next.</p>")
    else:
        parts.append(f"<p>Signed in as <strong>{escape(view.user_name)}</strong>.</p>")
    if view.localhost_only:
        parts.append(
            '<p class="warning" role="note"><strong>This application runs on your own computer.</strong> '
            "It is not a website: approve only if you started it yourself just now. "
            "Any program on this computer could have asked in its name.</p>"
        )
    if view.scopes:
        items = "\n".join(
            f"<li>{escape(description)} (<code>{escape(scope)}</code>)</li>" for scope, description in view.scopes
        )
        parts.append(f"<h2>It asks to</h2>\n<ul>\n{items}\n</ul>")
    else:
        parts.append("<h2>It asks to</h2>\n<p>Know who you are (no other permission).</p>")
    parts.append(f"<p>Access to: <code>{escape(view.resource)}</code></p>")
    parts.append(f"<p>After your answer you will be sent back to <strong>{escape(view.redirect_host)}</strong>.</p>")
    withdraw_later = ""
    if view.consents_url:
        withdraw_later = (
            f'<p>You can withdraw this later on <a href="{escape(view.consents_url)}">'
            "the page of the applications you allowed</a>.</p>\n"
        )
    parts.append(
        f'<form method="post" action="{escape(view.action)}">\n'
        f"{_hidden('flow', view.flow_id)}\n{_hidden('csrf', view.csrf)}\n"
        f"{_remember(name, withdraw_later)}"
        '<button type="submit" name="decision" value="approve">Allow</button>\n'
        '<button type="submit" name="decision" value="deny">Deny</button>\n'
        "</form>"
    )
    return _document(f"Allow {view.client_name}?", "\n".join(parts))


@dataclass(frozen=True)
class ConsentEntry:
    """One application on the consents page."""

    client_id: str
    client_name: str
    #: The client id, shown when it is a URL (a Client ID Metadata Document).
    client_url: str | None
    #: ``(scope, description)`` pairs.
    scopes: Sequence[tuple[str, str]]
    resources: Sequence[str]
    #: When it was given: ``(ISO 8601, text to show)``.
    granted: tuple[str, str]
    #: ``False`` for an application allowed once without "remember": it keeps its access until withdrawn.
    remembered: bool = True


@dataclass(frozen=True)
class ConsentsView:
    """What the consents page shows to the signed-in user."""

    withdraw_action: str
    sign_out_action: str
    csrf: str
    user_name: str
    entries: Sequence[ConsentEntry]
    #: A confirmation to show first (an application's access just withdrawn).
    notice: str | None = None


def _consent_entry(number: int, entry: ConsentEntry, action: str, csrf: str) -> str:
    name = escape(entry.client_name)
    heading = f"client-{number}"
    parts = [f'<section aria-labelledby="{heading}">', f'<h2 id="{heading}">{name}</h2>']
    if entry.client_url:
        parts.append(f"<p>Identified by <code>{escape(entry.client_url)}</code></p>")
    if not entry.remembered:
        parts.append(
            "<p>You allowed it once without asking to remember: it stays signed in until you withdraw "
            "its access or its session ends, and it will ask you again next time.</p>"
        )
    elif entry.scopes:
        items = "\n".join(
            f"<li>{escape(description)} (<code>{escape(scope)}</code>)</li>" for scope, description in entry.scopes
        )
        parts.append(f"<p>It may:</p>\n<ul>\n{items}\n</ul>")
    else:
        parts.append("<p>It may know who you are (no other permission).</p>")
    if entry.resources:
        resources = ", ".join(f"<code>{escape(resource)}</code>" for resource in entry.resources)
        parts.append(f"<p>Access to: {resources}</p>")
    iso, shown = entry.granted
    parts.append(f'<p>Allowed on <time datetime="{escape(iso)}">{escape(shown)}</time>.</p>')
    parts.append(
        f'<form method="post" action="{escape(action)}">\n'
        f"{_hidden('csrf', csrf)}\n{_hidden('client_id', entry.client_id)}\n"
        f'<button type="submit" aria-label="Withdraw access for {name}">Withdraw access</button>\n'
        "</form>\n</section>"
    )
    return "\n".join(parts)


def consents_page(view: ConsentsView) -> str:
    """The applications the signed-in user allowed, each with a button to withdraw its access; and sign out."""
    parts = ["<h1>Applications you allowed</h1>"]
    if view.notice:
        parts.append(f'<p role="status">{escape(view.notice)}</p>')
    parts.append(f"<p>Signed in as <strong>{escape(view.user_name)}</strong>.</p>")
    if view.entries:
        parts.append(
            "<p>These applications may use your account without asking again. Withdrawing access signs the "
            "application out: it must ask you again before it can use your account.</p>"
        )
        parts.extend(
            _consent_entry(number, entry, view.withdraw_action, view.csrf)
            for number, entry in enumerate(view.entries, 1)
        )
    else:
        parts.append("<p>You have not allowed any application to use your account without asking.</p>")
    parts.append(
        "<h2>Sign out</h2>\n"
        f'<form method="post" action="{escape(view.sign_out_action)}">\n'
        f"{_hidden('csrf', view.csrf)}\n"
        '<button type="submit">Sign out</button>\n'
        "</form>"
    )
    return _document("Applications you allowed", "\n".join(parts))
