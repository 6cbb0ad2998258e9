"""The Python client, the CLI and the embedded dev server."""

from graphrunner.client._client import (
    GraphrunnerClient,
    LifetimeHandle,
    LifetimeInfo,
    LostContact,
    connect_temporal,
)
from graphrunner.client._devserver import DevServer, temporal_binary

__all__ = [
    "DevServer",
    "GraphrunnerClient",
    "LifetimeHandle",
    "LifetimeInfo",
    "LostContact",
    "connect_temporal",
    "temporal_binary",
]
