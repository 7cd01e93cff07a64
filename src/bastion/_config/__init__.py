"""Configuration from ``BASTION_*`` environment variables."""
