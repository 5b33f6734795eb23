"""The Python client of driftloop."""

from driftloop.client.client import ClientSettings, DriftloopClient

__all__ = ["ClientSettings", "DriftloopClient"]
