"""One module per endpoint of the authorization server."""
