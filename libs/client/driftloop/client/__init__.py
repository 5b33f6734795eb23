"""The Python client of driftloop: `DriftloopClient` (asyncio) and `Client` (blocking)."""

from driftloop.client.client import ClientSettings, DriftloopClient
from driftloop.client.sync import Client

__all__ = ["Client", "ClientSettings", "DriftloopClient"]
