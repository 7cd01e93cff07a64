"""What the tests share: fake servers, clocks, the notes server, the authorization server's helpers."""
