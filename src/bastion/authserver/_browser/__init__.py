"""What the user's browser sees: flows, sessions and cookies, sign-in, consent, pages."""
