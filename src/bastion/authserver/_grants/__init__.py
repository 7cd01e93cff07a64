"""One module per grant type of the token endpoint."""
