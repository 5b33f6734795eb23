"""The drift service."""
