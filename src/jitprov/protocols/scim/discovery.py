"""``/ServiceProviderConfig``, ``/Schemas``, ``/ResourceTypes`` (RFC 7644 section 4,
RFC 7643 sections 5-7): built once with scim2-models, served as dicts with a per-tenant
``meta.location``.

The ServiceProviderConfig says only what is true: PATCH yes, Bulk yes (with its limits, which
the routes enforce), filtering yes (``maxResults`` caps ``count``), sorting yes, ETags yes,
password change no, bearer-token authentication.
"""

from __future__ import annotations

import copy
from typing import Any

from scim2_models import (
    AuthenticationScheme,
    Bulk,
    ChangePassword,
    Context,
    ETag,
    Filter,
    Group,
    Patch,
    ResourceType,
    Schema,
    ServiceProviderConfig,
    Sort,
)

from jitprov.protocols.scim.errors import NotFound
from jitprov.protocols.scim.resources import (
    ENTERPRISE_SCHEMA_MODEL,
    GROUP_SCHEMA_MODEL,
    LIST_SCHEMA,
    USER_SCHEMA_MODEL,
    UserModel,
)

#: Bulk: at most this many operations per request (RFC 7644 section 3.7.4)
MAX_OPERATIONS = 1000
#: bytes; a request body larger than this is refused with 413 before it is parsed
MAX_PAYLOAD_SIZE = 2 * 1024 * 1024
#: a query returns at most this many resources per page (``count`` is capped to it)
MAX_RESULTS = 1000
DOCUMENTATION = "https://github.com/jitprov/jitprov#scim"


def _service_provider_config() -> dict[str, Any]:
    config = ServiceProviderConfig(
        documentation_uri=DOCUMENTATION,
        patch=Patch(supported=True),
        bulk=Bulk(supported=True, max_operations=MAX_OPERATIONS,
                  max_payload_size=MAX_PAYLOAD_SIZE),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[AuthenticationScheme(
            type="oauthbearertoken", name="OAuth Bearer Token",
            description="A per-tenant bearer token from `jitprov scim-token create`, sent as "
                        "`Authorization: Bearer <token>`",
            spec_uri="https://www.rfc-editor.org/rfc/rfc6750", primary=True)],
    )
    body: dict[str, Any] = config.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
                                             mode="json")
    body["meta"] = {"resourceType": "ServiceProviderConfig"}
    return body


def _schema(model: Schema) -> dict[str, Any]:
    body: dict[str, Any] = model.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE,
                                            mode="json")
    body["meta"] = {"resourceType": "Schema"}
    return body


def _resource_type(model: Any) -> dict[str, Any]:
    body: dict[str, Any] = ResourceType.from_resource(model).model_dump(
        scim_ctx=Context.RESOURCE_QUERY_RESPONSE, mode="json")
    body["meta"] = {"resourceType": "ResourceType"}
    return body


SERVICE_PROVIDER_CONFIG = _service_provider_config()
SCHEMAS = {s["id"]: s for s in map(_schema, (USER_SCHEMA_MODEL, ENTERPRISE_SCHEMA_MODEL,
                                             GROUP_SCHEMA_MODEL))}
RESOURCE_TYPES = {r["id"]: r for r in map(_resource_type, (UserModel, Group))}


def service_provider_config(base: str) -> dict[str, Any]:
    """The configuration, ``meta.location`` under ``base`` (the tenant's SCIM root URL)."""
    body = copy.deepcopy(SERVICE_PROVIDER_CONFIG)
    body["meta"]["location"] = f"{base}/ServiceProviderConfig"
    return body


def _located(body: dict[str, Any], base: str, collection: str) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["meta"]["location"] = f"{base}/{collection}/{body['id']}"
    return out


def schema(base: str, schema_id: str) -> dict[str, Any]:
    """One schema by URN. Raises NotFound."""
    if schema_id not in SCHEMAS:
        raise NotFound(f"no schema {schema_id!r}")
    return _located(SCHEMAS[schema_id], base, "Schemas")


def resource_type(base: str, name: str) -> dict[str, Any]:
    """One resource type by name. Raises NotFound."""
    if name not in RESOURCE_TYPES:
        raise NotFound(f"no resource type {name!r}")
    return _located(RESOURCE_TYPES[name], base, "ResourceTypes")


def list_response(resources: list[dict[str, Any]], *, total: int | None = None,
                  start_index: int = 1) -> dict[str, Any]:
    """A ListResponse (RFC 7644 section 3.4.2)."""
    return {"schemas": [LIST_SCHEMA], "totalResults": len(resources) if total is None else total,
            "startIndex": start_index, "itemsPerPage": len(resources), "Resources": resources}


def schemas(base: str) -> dict[str, Any]:
    return list_response([_located(s, base, "Schemas") for s in SCHEMAS.values()])


def resource_types(base: str) -> dict[str, Any]:
    return list_response([_located(r, base, "ResourceTypes") for r in RESOURCE_TYPES.values()])
