"""(being written) Refresh tokens: rotation, grace window, reuse detection."""

REFRESH_NAMESPACE = "refresh"
