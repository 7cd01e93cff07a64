"""The HTML of the sign-in, consent and error pages: plain, accessible, branded, no JavaScript.

Each page sits in the frame of :mod:`.layout` (the service's name and logo, the
stylesheet, the support link). Every value that comes from a request, a client
registration or a user record is escaped with :func:`html.escape` where it is placed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from bastion.authserver._browser.layout import Look, document, hidden, support_link

__all__ = [
    "EXPLANATIONS",
    "ConsentView",
    "bad_request_page",
    "consent_page",
    "error_page",
    "login_page",
    "scope_list",
]

#: A plain explanation under a scope's description, where what it allows is not obvious.
EXPLANATIONS = {
    "offline_access": "It can keep using your account after you close this page, until you withdraw its access.",
}


def scope_list(scopes: Sequence[tuple[str, str]], labelled_by: str) -> str:
    """The ``(scope, description)`` pairs as a list: the description first, the scope's name aside."""
    if not scopes:
        nothing = '<li><div><strong>Know who you are</strong><span class="muted">No other permission.</span></div></li>'
        return f'<ul class="scopes" aria-labelledby="{labelled_by}">\n{nothing}\n</ul>'
    items = []
    for scope, description in scopes:
        explanation = EXPLANATIONS.get(scope)
        more = f'<span class="muted">{escape(explanation)}</span>' if explanation else ""
        name = "" if description == scope else f" <code>{escape(scope)}</code>"
        items.append(f"<li><div><strong>{escape(description)}</strong>{more}</div>{name}</li>")
    return f'<ul class="scopes" aria-labelledby="{labelled_by}">\n' + "\n".join(items) + "\n</ul>"


def _details(text: str) -> str:
    return f"<details>\n<summary>Technical details</summary>\n<p><code>{escape(text)}</code></p>\n</details>"


def error_page(
    look: Look,
    title: str,
    message: str,
    *,
    link: tuple[str, str] | None = None,
    next_step: str | None = None,
    details: str | None = None,
) -> str:
    """A page that explains why the request cannot go on.

    ``next_step``: what the person can do now; ``link``: an ``(href, text)`` to go on
    from; ``details``: the technical reason, folded away under "Technical details".
    """
    parts = [f"<h1>{escape(title)}</h1>", f'<p class="box error">{escape(message)}</p>']
    if next_step:
        parts.append(f"<p>{escape(next_step)}</p>")
    if link is not None:
        parts.append(
            f'<div class="actions"><a class="button primary" href="{escape(link[0])}">{escape(link[1])}</a></div>'
        )
    if details:
        parts.append(
            f"<details>\n<summary>Technical details</summary>\n<p><code>{escape(details)}</code></p>\n</details>"
        )
    return document(look, title, "\n".join(parts))


def bad_request_page(look: Look, details: str) -> str:
    """The page for an authorization request that cannot be answered to the app (an unknown
    client, an unregistered redirect URI): in plain words, what to do, then the reason for its developer."""
    service = escape(look.service_name)
    title = "This app can't sign you in"
    helpline = support_link(look, f"contact {look.service_name} support")
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="box error">The app that sent you here is not set up correctly for {service}, '
        "so it cannot sign you in. Nothing was shared with it.</p>",
        "<p>Close this page and go back to the app. If this keeps happening, tell the app's developer "
        "(the technical details below help them fix it)" + (f", or {helpline}" if helpline else "") + ".</p>",
        _details(details),
    ]
    return document(look, title, "\n".join(parts))


def login_page(
    look: Look,
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
    """The username and password form of the built-in login step.

    ``client_name`` names the app being signed in to; empty when the person signs in
    to see the applications they allowed.
    """
    service = escape(look.service_name)
    if client_name:
        lead = f'<p class="lead">to continue to <strong>{escape(client_name)}</strong></p>'
    else:
        lead = '<p class="lead">to see the applications you allowed</p>'
    alert = f'<p class="box error" role="alert" id="signin-error">{escape(error)}</p>\n' if error else ""
    invalid = ' aria-invalid="true" aria-describedby="signin-error"' if error else ""
    # After a failed attempt the username is kept: the password is what to type again.
    user_focus, password_focus = (" autofocus", "") if not username else ("", " autofocus")
    body = (
        f"<h1>Sign in to {service}</h1>\n{lead}\n{alert}"
        f'<form method="post" action="{escape(action)}">\n'
        f"{hidden('flow', flow_id)}\n{hidden('csrf', csrf)}\n"
        '<label for="username">Username</label>\n'
        f'<input type="text" id="username" name="username" value="{escape(username)}" '
        'autocomplete="username" autocapitalize="none" spellcheck="false" '
        f'maxlength="{max_username}" required{user_focus}{invalid}>\n'
        '<label for="password">Password</label>\n'
        f'<input type="password" id="password" name="password" autocomplete="current-password" '
        f'maxlength="{max_password}" required{password_focus}{invalid}>\n'
        '<div class="actions"><button type="submit" class="primary">Sign in</button></div>\n'
        "</form>"
    )
    return document(look, "Sign in", body)


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
    #: Where "Not you?" posts (signs this browser out and shows the sign-in form again), if anywhere.
    switch_action: str | None = None


def _account(view: ConsentView) -> str:
    if view.provider:
        return f"<p>If you allow it, you will sign in with <strong>{escape(view.provider)}</strong> next.</p>"
    signed_in = f"<span>Signed in as <strong>{escape(view.user_name)}</strong></span>"
    if view.switch_action is None:
        return f'<div class="account">{signed_in}</div>'
    return (
        f'<div class="account">{signed_in}\n'
        f'<form class="inline" method="post" action="{escape(view.switch_action)}">'
        f"{hidden('flow', view.flow_id)}{hidden('csrf', view.csrf)}"
        '<button type="submit" class="linklike">Not you? Switch account</button></form></div>'
    )


def _remember(name: str, consents_url: str | None) -> str:
    later = ""
    if consents_url:
        later = (
            f' You can withdraw this later on <a href="{escape(consents_url)}">'
            "the page of the applications you allowed</a>."
        )
    return (
        '<div class="check"><input type="checkbox" id="remember" name="remember" value="yes" '
        'aria-describedby="remember-hint">\n'
        f'<div><label for="remember">Remember my decision for {name}</label>\n'
        f'<p class="muted" id="remember-hint">It will not ask you again for these permissions.{later}</p></div></div>'
    )


def consent_page(look: Look, view: ConsentView) -> str:
    """The page where the signed-in user approves or denies a client's request."""
    name = escape(view.client_name)
    parts = [
        f"<h1>Allow {name} to access your account?</h1>",
        f'<p class="lead"><strong>{name}</strong> is asking to use your {escape(look.service_name)} account.</p>',
        _account(view),
    ]
    if view.localhost_only:
        parts.append(
            '<p class="box warning" role="note"><strong>This application runs on your own computer.</strong> '
            "It is not a website: approve only if you started it yourself just now. "
            "Any program on this computer could have asked in its name.</p>"
        )
    parts.append(f'<h2 id="asks">{name} will be able to</h2>')
    parts.append(scope_list(view.scopes, "asks"))
    facts = [f"<dt>Access to</dt><dd><code>{escape(view.resource)}</code></dd>"]
    if view.client_url:
        facts.insert(0, f"<dt>Application</dt><dd>{name}, identified by <code>{escape(view.client_url)}</code></dd>")
    facts.append(f"<dt>Afterwards</dt><dd>You will be sent back to <strong>{escape(view.redirect_host)}</strong></dd>")
    parts.append('<dl class="facts">\n' + "\n".join(facts) + "\n</dl>")
    parts.append(
        f'<form method="post" action="{escape(view.action)}">\n'
        f"{hidden('flow', view.flow_id)}\n{hidden('csrf', view.csrf)}\n"
        f"{_remember(name, view.consents_url)}\n"
        '<div class="actions">\n'
        '<button type="submit" name="decision" value="approve" class="primary">Allow</button>\n'
        '<button type="submit" name="decision" value="deny">Deny</button>\n'
        "</div>\n</form>"
    )
    return document(look, f"Allow {view.client_name}?", "\n".join(parts))
