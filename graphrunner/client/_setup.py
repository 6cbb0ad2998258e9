"""Register graphrunner's search attributes on a namespace (``graphrunner setup``)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from graphrunner._attributes import SEARCH_ATTRIBUTES, type_name
from graphrunner.errors import GraphrunnerError

__all__ = [
    "NAMESPACE_RETENTION",
    "AttributeSetup",
    "ensure_namespace",
    "present_attributes",
    "setup_search_attributes",
]

NAMESPACE_RETENTION = timedelta(days=7)
"""How long a namespace `ensure_namespace` creates keeps closed lifetimes."""

_NEW_NAMESPACE_WAIT_S = 30.0  # the frontend's namespace cache learns of a new one in ~10 s


@dataclass(frozen=True)
class AttributeSetup:
    """What `setup_search_attributes` did with one attribute.

    Attributes:
        name: The attribute, e.g. ``GraphrunnerStatus``.
        type: Its type as the ``temporal`` CLI spells it (``Keyword``, ``Double``).
        outcome: ``registered`` (now) or ``present`` (it was already, with this type).
    """

    name: str
    type: str
    outcome: str


async def ensure_namespace(temporal: Client) -> bool:
    """Create the client's namespace if the server lacks it; True if it was created.

    For hard tenant isolation on a self-hosted cluster or the dev server. Temporal Cloud
    namespaces are created in its UI or with ``tcld``; there this only checks.

    Raises:
        GraphrunnerError: The namespace is missing and the server refused to create it.
    """
    name = temporal.namespace
    service = temporal.workflow_service
    try:
        await service.describe_namespace(DescribeNamespaceRequest(namespace=name))
        return False
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise GraphrunnerError(f"cannot describe namespace {name}: {exc.message}") from None
    request = RegisterNamespaceRequest(namespace=name, description="graphrunner tenant")
    request.workflow_execution_retention_period.FromTimedelta(NAMESPACE_RETENTION)
    try:
        await service.register_namespace(request)
    except RPCError as refused:
        if refused.status is not RPCStatusCode.ALREADY_EXISTS:
            raise GraphrunnerError(
                f"namespace {name} does not exist and the server refused to create it: "
                f"{refused.message} (create it with 'temporal operator namespace create' or in "
                "Temporal Cloud, then run 'graphrunner setup' again)"
            ) from None
    # A new namespace reaches every frontend's cache within seconds: wait until it answers.
    deadline = asyncio.get_running_loop().time() + _NEW_NAMESPACE_WAIT_S
    while True:
        try:
            await present_attributes(temporal)
            return True
        except RPCError:
            if asyncio.get_running_loop().time() > deadline:
                raise GraphrunnerError(
                    f"namespace {name} was created but does not answer yet; run "
                    "'graphrunner setup' again in a minute"
                ) from None
            await asyncio.sleep(0.5)


async def present_attributes(temporal: Client) -> dict[str, int]:
    """The namespace's custom search attributes: name -> indexed value type."""
    found = await temporal.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=temporal.namespace)
    )
    return dict(found.custom_attributes)


async def setup_search_attributes(temporal: Client) -> list[AttributeSetup]:
    """Register every graphrunner search attribute the namespace lacks; idempotent.

    Raises:
        GraphrunnerError: One exists with another type (named, with both types; nothing is
            changed), or the server refused (e.g. no permission: Temporal Cloud registers
            attributes in its UI or with ``tcld``).
    """
    try:
        present = await present_attributes(temporal)
    except RPCError as exc:
        raise GraphrunnerError(
            f"cannot list the search attributes of namespace {temporal.namespace}: {exc.message}"
        ) from None
    clashes = [
        f"{key.name} is {type_name(present[key.name])}, graphrunner needs "
        f"{type_name(key.indexed_value_type)}"
        for key in SEARCH_ATTRIBUTES
        if key.name in present and present[key.name] != key.indexed_value_type
    ]
    if clashes:
        raise GraphrunnerError(
            f"namespace {temporal.namespace} has search attributes of the wrong type: "
            + "; ".join(clashes)
            + " (remove them with 'temporal operator search-attribute remove', then run "
            "'graphrunner setup' again)"
        )
    missing = [key for key in SEARCH_ATTRIBUTES if key.name not in present]
    if missing:
        request = AddSearchAttributesRequest(
            namespace=temporal.namespace,
            search_attributes={
                key.name: IndexedValueType.ValueType(int(key.indexed_value_type)) for key in missing
            },
        )
        try:
            await temporal.operator_service.add_search_attributes(request)
        except RPCError as exc:
            if exc.status is not RPCStatusCode.ALREADY_EXISTS:  # a concurrent setup
                raise GraphrunnerError(
                    f"cannot register search attributes on namespace {temporal.namespace}: "
                    f"{exc.message}"
                ) from None
    return [
        AttributeSetup(
            key.name,
            type_name(key.indexed_value_type),
            "registered" if key in missing else "present",
        )
        for key in SEARCH_ATTRIBUTES
    ]
