"""The gateway: the only service applications call."""
