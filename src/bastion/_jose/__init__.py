"""JOSE machinery (RFC 7515, 7517, 7518, 7519): compact parsing, keys and algorithms, remote key sets."""
