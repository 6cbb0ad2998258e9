"""The Python client, the CLI and the embedded dev server."""

from graphrunner.client._client import (
    ControlRefused,
    GraphrunnerClient,
    LifetimeHandle,
    LifetimeInfo,
    LostContact,
    connect_temporal,
)
from graphrunner.client._control import BulkOutcome
from graphrunner.client._devserver import DevServer, temporal_binary
from graphrunner.client._fork import ForkResult
from graphrunner.client._setup import AttributeSetup
from graphrunner.client._state_view import StateAt

__all__ = [
    "AttributeSetup",
    "BulkOutcome",
    "ControlRefused",
    "DevServer",
    "ForkResult",
    "GraphrunnerClient",
    "LifetimeHandle",
    "LifetimeInfo",
    "LostContact",
    "StateAt",
    "connect_temporal",
    "temporal_binary",
]
