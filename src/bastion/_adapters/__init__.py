"""Adapters to frameworks: ``bastion.MCPServer`` on the MCP SDK, ``protect()`` for any ASGI app."""
