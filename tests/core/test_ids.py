"""Identifiers an operator types are never read as a command-line option."""

from bastion._core.ids import new_identifier


def test_an_identifier_never_begins_with_a_dash() -> None:
    # token_urlsafe begins with "-" once in 64; 5,000 draws would all but surely show one.
    identifiers = {new_identifier(16) for _ in range(5000)}
    assert len(identifiers) == 5000
    assert not any(identifier.startswith("-") for identifier in identifiers)
    assert all(len(identifier) == 22 for identifier in identifiers)
