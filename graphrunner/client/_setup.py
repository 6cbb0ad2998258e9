"""Register graphrunner's search attributes on a namespace (``graphrunner setup``)."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from graphrunner._attributes import SEARCH_ATTRIBUTES, type_name
from graphrunner.errors import GraphrunnerError

__all__ = ["AttributeSetup", "present_attributes", "setup_search_attributes"]


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
