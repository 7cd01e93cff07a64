"""Small facts about hosts (shared with the rest of bastion)."""

from bastion._net import is_loopback_host

__all__ = ["is_loopback_host"]
