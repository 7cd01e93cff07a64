"""The HTML of the page of the applications a user allowed, and of the same page without a session.

In the frame of :mod:`.layout`; every value placed is escaped with :func:`html.escape`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from bastion.authserver._browser.layout import Look, document, hidden
from bastion.authserver._browser.pages import scope_list

__all__ = ["TITLE", "ConsentEntry", "ConsentsView", "consents_page", "not_signed_in_page"]

TITLE = "Applications you allowed"


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


def _entry(number: int, entry: ConsentEntry, action: str, csrf: str) -> str:
    name = escape(entry.client_name)
    heading = f"client-{number}"
    parts = [f'<section class="app" aria-labelledby="{heading}">', f'<h2 id="{heading}">{name}</h2>']
    if entry.client_url:
        parts.append(f'<p class="muted">Identified by <code>{escape(entry.client_url)}</code></p>')
    if not entry.remembered:
        parts.append(
            "<p>You allowed it once without asking to remember: it stays signed in until you withdraw "
            "its access or its session ends, and it will ask you again next time.</p>"
        )
    else:
        parts.append(f'<p id="{heading}-may">It may:</p>')
        parts.append(scope_list(entry.scopes, f"{heading}-may"))
    facts = []
    if entry.resources:
        resources = ", ".join(f"<code>{escape(resource)}</code>" for resource in entry.resources)
        facts.append(f"<dt>Access to</dt><dd>{resources}</dd>")
    iso, shown = entry.granted
    facts.append(f'<dt>Allowed on</dt><dd><time datetime="{escape(iso)}">{escape(shown)}</time></dd>')
    parts.append('<dl class="facts">\n' + "\n".join(facts) + "\n</dl>")
    parts.append(
        f'<form method="post" action="{escape(action)}">\n'
        f"{hidden('csrf', csrf)}\n{hidden('client_id', entry.client_id)}\n"
        f'<div class="actions start"><button type="submit" class="danger" aria-label="Withdraw access for {name}">'
        "Withdraw access</button></div>\n"
        "</form>\n</section>"
    )
    return "\n".join(parts)


def consents_page(look: Look, view: ConsentsView) -> str:
    """The applications the signed-in user allowed, each with a button to withdraw its access; and sign out."""
    parts = [f"<h1>{TITLE}</h1>"]
    if view.notice:
        parts.append(f'<p class="box notice" role="status">{escape(view.notice)}</p>')
    parts.append(
        f'<div class="account"><span>Signed in as '
        f"<strong>{escape(view.user_name)}</strong></span>\n"
        f'<form class="inline" method="post" action="{escape(view.sign_out_action)}">{hidden("csrf", view.csrf)}'
        '<button type="submit" class="linklike">Sign out</button></form></div>'
    )
    if view.entries:
        parts.append(
            '<p class="lead">These applications may use your account without asking again. Withdrawing access '
            "signs the application out: it must ask you again before it can use your account.</p>"
        )
        parts.extend(
            _entry(number, entry, view.withdraw_action, view.csrf) for number, entry in enumerate(view.entries, 1)
        )
    else:
        parts.append('<p class="lead">You have not allowed any application to use your account without asking.</p>')
    return document(look, TITLE, "\n".join(parts))


def not_signed_in_page(look: Look, sign_in_url: str | None) -> str:
    """``/consents`` without a session: sign in here (and come back), or, without a way to, where to start."""
    service = escape(look.service_name)
    parts = ["<h1>You are not signed in</h1>"]
    if sign_in_url is not None:
        parts.append(
            f'<p class="lead">Sign in to {service} to see the applications you allowed to use your account, '
            "and to withdraw their access.</p>"
        )
        parts.append(f'<div class="actions"><a class="button primary" href="{escape(sign_in_url)}">Sign in</a></div>')
    else:
        parts.append(
            f'<p class="lead">Sign in through an application that uses {service}, '
            "then come back to this page to see the applications you allowed.</p>"
        )
    return document(look, "You are not signed in", "\n".join(parts))
