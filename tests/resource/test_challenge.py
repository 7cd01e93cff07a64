"""The WWW-Authenticate header is built in one place and escaped."""

from bastion._resource.challenge import bearer_challenge


def test_parameters_are_quoted_and_escaped() -> None:
    header = bearer_challenge(
        resource_metadata='https://a.example/x"y', error="invalid_token", description='bad \\ "quote"\r\nX: y'
    )
    assert header == (
        'Bearer error="invalid_token", error_description="bad \\\\ \\"quote\\"X: y", '
        'resource_metadata="https://a.example/x\\"y"'
    )


def test_bare_challenge_and_scope_order() -> None:
    assert bearer_challenge() == "Bearer"
    assert bearer_challenge(scopes=["b", "a"]) == 'Bearer scope="b a"'
    assert bearer_challenge(scopes=[]) == "Bearer"
    assert bearer_challenge(description="ignored without an error") == "Bearer"
