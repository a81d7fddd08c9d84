"""``/scim/v2/{tenant}/...``: the SCIM 2.0 service provider (RFC 7644), plain Starlette.

Every answer is ``application/scim+json``; every failure is an RFC 7644 section 3.12 error body
(``schemas``, ``status``, ``scimType``, ``detail``), including 401, 404 of an unknown endpoint,
405, 413 and the catch-all 500 (whose body never carries internals; the log has them, under
the request id). Request bodies are limited to ``maxPayloadSize`` before they are parsed.
Database work runs in the threadpool.

The error rendering lives here rather than in ``web/errors.py`` because SCIM clients need
the SCIM body on every path of these routes, 500 included, and the app-wide handlers render
the admin API's shape; :func:`scim_error` is the one SCIM renderer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from jitprov.core.errors import DatabaseNotReady, JitprovError
from jitprov.core.text import safe_tree
from jitprov.protocols.scim import discovery
from jitprov.protocols.scim import errors as e
from jitprov.protocols.scim.limits import check_filter
from jitprov.protocols.scim.quirks import Quirks
from jitprov.protocols.scim.resources import Kind, Projection, parse_projection
from jitprov.services import metrics
from jitprov.services.context import ServiceContext
from jitprov.services.scim.bulk import run_bulk
from jitprov.services.scim.common import Rendered, as_scim_error
from jitprov.services.scim.dispatch import RESOURCES
from jitprov.services.scim.tokens import ScimPrincipal, authenticate, cached_principal
from jitprov.web.routes.common import ctx_of, run_service, settings_of

log = logging.getLogger("jitprov.scim")

MEDIA_TYPE = "application/scim+json"
ACCEPTED_TYPES = ("application/scim+json", "application/json")
SEARCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
BULK_REQUEST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
QUIRKS = Quirks()
MAX_INT = 2**31 - 1  # startIndex, count, failOnErrors: what every database takes

Endpoint = Callable[[Request], Awaitable[Response]]


class ScimResponse(JSONResponse):
    """A SCIM JSON answer. A row stored before the input rule may hold a lone surrogate,
    which UTF-8 cannot encode: such a body is rendered again with U+FFFD in its place, so a
    read never fails on it."""

    media_type = MEDIA_TYPE

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(safe_tree(content))


def scim_error(request: Request, error: e.ScimError) -> Response:
    """The one SCIM error renderer (RFC 7644 section 3.12)."""
    headers = {"WWW-Authenticate": 'Bearer realm="scim"'} if error.status == 401 else None
    if error.status == 503:  # the database is unavailable or timed out (as_scim_error)
        headers = {"Retry-After": str(DatabaseNotReady.retry_after)}
    request.state.scim_outcome = error.scim_type or str(error.status)  # for the metrics
    return ScimResponse(error.as_body(), status_code=error.status, headers=headers)


def _request_id(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def scim_endpoint(handler: Callable[[Request, ScimPrincipal | None], Awaitable[Response]], *,
                  methods: tuple[str, ...], public: bool = False) -> Endpoint:
    """Wrap a handler: the method check, bearer authentication for the path's tenant, and
    SCIM error bodies for every failure."""

    async def endpoint(request: Request) -> Response:
        response = await answer(request)
        _count_operation(request, response.status_code)
        return response

    async def answer(request: Request) -> Response:
        try:
            if request.method not in methods:
                raise e.MethodNotAllowed(f"{request.method} is not allowed here")
            principal = None
            if not public:
                principal = await _authenticate(request)
            return await handler(request, principal)
        except JitprovError as exc:
            return scim_error(request, as_scim_error(exc))
        except RecursionError:  # JSON nested deeper than any resource: refused, not a 500
            return scim_error(request, e.InvalidSyntax("the request is nested too deeply"))
        except Exception:  # the catch-all: a SCIM 500 body, details in the log only
            log.exception("unhandled SCIM error", extra={"request_id": _request_id(request)})
            return scim_error(request, as_scim_error(RuntimeError()))

    return endpoint


#: the resource of a path segment after the tenant, as the metrics name it
_RESOURCE_OF = {"Users": "User", "Groups": "Group", ".search": "Root", "Bulk": "Bulk"}


def _count_operation(request: Request, status: int) -> None:
    """``jitprov_scim_operations``: resource, operation and outcome (``ok`` or the error's
    scimType, else its status) of one SCIM request, from its path."""
    parts = request.scope["path"].split("/")[4:]  # "", "scim", "v2", tenant, ...
    first = parts[0] if parts else ""
    resource = _RESOURCE_OF.get(first) or (
        "Discovery" if first in ("ServiceProviderConfig", "Schemas", "ResourceTypes")
        else "Unknown")
    method = request.method
    if resource in ("Discovery", "Unknown"):
        operation = "discover" if resource == "Discovery" else "other"
    elif resource == "Bulk":
        operation = "bulk"
    elif parts[-1] == ".search":
        operation = "search"
    elif method == "GET":
        operation = "get" if len(parts) > 1 else "list"
    else:
        operation = {"POST": "create", "PUT": "replace", "PATCH": "patch",
                     "DELETE": "delete"}.get(method, "other")
    outcome = "ok" if status < 400 else getattr(request.state, "scim_outcome", str(status))
    metrics.SCIM_OPERATIONS.labels(resource, operation, outcome).inc()


async def _authenticate(request: Request) -> ScimPrincipal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    principal = None
    if scheme.lower() == "bearer" and token.strip():
        ctx, tenant = ctx_of(request), request.path_params["tenant"]
        principal = cached_principal(ctx, tenant, token.strip()) or await run_in_threadpool(
            authenticate, ctx, tenant, token.strip())
    if principal is None:
        raise e.Unauthorized("a valid bearer token of this tenant is required")
    return principal


def _base(request: Request) -> str:
    return f"{settings_of(request).base_url}/scim/v2/{request.path_params['tenant']}"


async def read_json(request: Request) -> Any:
    """The body as JSON: 413 past ``maxPayloadSize`` (checked on Content-Length, then while
    reading), 400 invalidSyntax for a wrong Content-Type or malformed JSON."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in ACCEPTED_TYPES:
        raise e.InvalidSyntax(f"Content-Type must be {MEDIA_TYPE} (or application/json)")
    limit = discovery.MAX_PAYLOAD_SIZE
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise e.PayloadTooLarge(f"the request body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise e.PayloadTooLarge(f"the request body is larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise e.InvalidSyntax("the request body is empty")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise e.InvalidSyntax(f"the request body is not valid JSON: {exc}") from None


def _respond(rendered: Rendered, *, status: int = 200, location: bool = False) -> Response:
    headers: dict[str, str] = {}
    if rendered.version is not None:
        headers["ETag"] = f'W/"{rendered.version}"'
    if rendered.body is None:
        return Response(status_code=204, headers=headers)
    if location and "meta" in rendered.body:
        headers["Location"] = rendered.body["meta"]["location"]
    return ScimResponse(rendered.body, status_code=status, headers=headers)


def _projection(kind: Kind, attributes: Any, excluded: Any) -> Projection:
    for value in (attributes, excluded):
        if value is not None and (not isinstance(value, str | list) or (isinstance(
                value, list) and not all(isinstance(v, str) for v in value))):
            raise e.InvalidValue("attributes and excludedAttributes are lists of paths")
    return parse_projection(kind, attributes, excluded)


def _int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise e.InvalidValue(f"{name} must be an integer")
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: JSON's Infinity
        raise e.InvalidValue(f"{name} must be an integer") from None
    if abs(number) > MAX_INT:
        raise e.InvalidValue(f"{name} is out of range")
    return number


def _descending(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, str) or value.lower() not in ("ascending", "descending"):
        raise e.InvalidValue("sortOrder must be ascending or descending")
    return value.lower() == "descending"


# -- Users and Groups ------------------------------------------------------------------------

async def _in_a_thread(_ctx: ServiceContext, fn: Callable[..., Any], /, *args: Any,
                       **kwargs: Any) -> Any:
    return await run_in_threadpool(fn, *args, **kwargs)


def _write(kind: Kind) -> Callable[..., Awaitable[Any]]:
    """How a write of ``kind`` runs: a User's (a few rows) on the event loop when it can
    (``run_service``); a Group's in a worker thread, as a PUT or PATCH may carry thousands of
    members and re-evaluate the roles of hundreds of accounts."""
    return run_service if kind == "User" else _in_a_thread


def _query(kind: Kind, request: Request, principal: ScimPrincipal,
           params: dict[str, Any]) -> Awaitable[dict[str, Any]]:
    filter_text = params.get("filter")
    if filter_text is not None and not isinstance(filter_text, str):
        raise e.InvalidFilter("filter must be a string")
    sort_by = params.get("sortBy")
    if sort_by is not None and not isinstance(sort_by, str):
        raise e.InvalidValue("sortBy must be an attribute path")
    return run_in_threadpool(
        RESOURCES[kind].query, ctx_of(request), principal, _base(request),
        filter_text=filter_text, sort_by=sort_by, descending=_descending(params.get("sortOrder")),
        start_index=_int("startIndex", params.get("startIndex")),
        count=_int("count", params.get("count")),
        projection=_projection(kind, params.get("attributes"),
                               params.get("excludedAttributes")))


def collection(kind: Kind) -> Endpoint:
    async def handle(request: Request, principal: ScimPrincipal | None) -> Response:
        assert principal is not None  # noqa: S101 - not public
        if request.method == "GET":
            params = dict(request.query_params)
            return ScimResponse(await _query(kind, request, principal, params))
        payload = await read_json(request)
        ctx = ctx_of(request)
        rendered = await _write(kind)(ctx, RESOURCES[kind].create, ctx, principal,
                                      _base(request), payload, request_id=_request_id(request))
        return _respond(rendered, status=201, location=True)

    return scim_endpoint(handle, methods=("GET", "POST"))


def search(kind: Kind) -> Endpoint:
    """``POST /Users/.search`` (RFC 7644 section 3.4.3)."""

    async def handle(request: Request, principal: ScimPrincipal | None) -> Response:
        assert principal is not None  # noqa: S101
        body = await read_json(request)
        if not isinstance(body, dict) or SEARCH_SCHEMA not in (body.get("schemas") or []):
            raise e.InvalidSyntax(f"a search body is a {SEARCH_SCHEMA} object")
        return ScimResponse(await _query(kind, request, principal, body))

    return scim_endpoint(handle, methods=("POST",))


async def _root_search(request: Request, principal: ScimPrincipal | None) -> Response:
    """``POST /.search`` (RFC 7644 section 3.4.3): Users then Groups, one page over both. A
    filter naming attributes of one resource type only matches that type."""
    assert principal is not None  # noqa: S101
    body = await read_json(request)
    if not isinstance(body, dict) or SEARCH_SCHEMA not in (body.get("schemas") or []):
        raise e.InvalidSyntax(f"a search body is a {SEARCH_SCHEMA} object")
    if isinstance(body.get("filter"), str):
        check_filter(body["filter"])  # bad text is a 400 here too, not "matches no type"
    start = max(1, _int("startIndex", body.get("startIndex")) or 1)
    count = _int("count", body.get("count"))
    size = discovery.MAX_RESULTS if count is None else max(0, min(count,
                                                                   discovery.MAX_RESULTS))
    pages: list[dict[str, Any]] = []
    refused: list[e.InvalidFilter] = []
    for kind in ("User", "Group"):
        params = {k: v for k, v in body.items() if k not in ("startIndex", "count")}
        try:
            pages.append(await _query(kind, request, principal,
                                      {**params, "startIndex": 1, "count": 0}))
        except e.InvalidFilter as exc:
            refused.append(exc)
            pages.append(discovery.list_response([], total=0))
    if len(refused) == len(pages):  # no type can answer it (its syntax, its text): a 400
        raise refused[0]
    totals = [p["totalResults"] for p in pages]
    resources: list[dict[str, Any]] = []
    offset = start - 1
    for kind, total in zip(("User", "Group"), totals, strict=True):
        wanted = size - len(resources)
        if wanted > 0 and offset < total:
            found = await _query(kind, request, principal,  # type: ignore[arg-type]
                                 {**body, "startIndex": offset + 1, "count": wanted})
            resources += found["Resources"]
            if len(found["Resources"]) < min(wanted, total - offset):
                break  # the page was cut at its size bound: the next one starts here
        offset = max(0, offset - total)
    return ScimResponse(discovery.list_response(resources, total=sum(totals),
                                                start_index=start))


def resource(kind: Kind) -> Endpoint:
    async def handle(request: Request, principal: ScimPrincipal | None) -> Response:
        assert principal is not None  # noqa: S101
        service = RESOURCES[kind]
        ctx, base = ctx_of(request), _base(request)
        resource_id = request.path_params["id"]
        if_match = request.headers.get("if-match")
        request_id = _request_id(request)
        params = request.query_params
        projection = _projection(kind, params.get("attributes"),
                                 params.get("excludedAttributes"))
        if request.method == "GET":
            rendered = await run_in_threadpool(service.get, ctx, principal, base, resource_id,
                                               projection)
            if_none_match = request.headers.get("if-none-match")
            if if_none_match and rendered.version is not None and \
                    if_none_match.strip() == f'W/"{rendered.version}"':
                return Response(status_code=304, headers={"ETag": if_none_match.strip()})
            return _respond(rendered)
        if request.method == "DELETE":
            await _write(kind)(ctx, service.delete, ctx, principal, resource_id,
                               if_match=if_match, request_id=request_id)
            return Response(status_code=204)
        payload = await read_json(request)
        if request.method == "PUT":
            rendered = await _write(kind)(ctx, service.replace, ctx, principal, base,
                                          resource_id, payload, if_match=if_match,
                                          request_id=request_id)
            return _respond(rendered)
        rendered = await _write(kind)(ctx, service.patch, ctx, principal, base, resource_id,
                                      payload, if_match=if_match, quirks=QUIRKS,
                                      request_id=request_id, projection=projection)
        return _respond(rendered)

    return scim_endpoint(handle, methods=("GET", "PUT", "PATCH", "DELETE"))


# -- discovery -------------------------------------------------------------------------------

async def _service_provider_config(request: Request, _: ScimPrincipal | None) -> Response:
    return ScimResponse(discovery.service_provider_config(_base(request)))


async def _schemas(request: Request, _: ScimPrincipal | None) -> Response:
    if "id" in request.path_params:
        return ScimResponse(discovery.schema(_base(request), request.path_params["id"]))
    return ScimResponse(discovery.schemas(_base(request)))


async def _resource_types(request: Request, _: ScimPrincipal | None) -> Response:
    if "id" in request.path_params:
        return ScimResponse(discovery.resource_type(_base(request), request.path_params["id"]))
    return ScimResponse(discovery.resource_types(_base(request)))


async def _unknown(request: Request, _: ScimPrincipal | None) -> Response:
    raise e.NotFound(f"no SCIM endpoint {request.url.path}")


# -- Bulk (RFC 7644 section 3.7) -------------------------------------------------------------

async def _bulk(request: Request, principal: ScimPrincipal | None) -> Response:
    assert principal is not None  # noqa: S101
    body = await read_json(request)
    if not isinstance(body, dict) or BULK_REQUEST_SCHEMA not in (body.get("schemas") or []):
        raise e.InvalidSyntax(f"a Bulk body is a {BULK_REQUEST_SCHEMA} object")
    operations = body.get("Operations")
    if not isinstance(operations, list):
        raise e.InvalidSyntax("Operations must be a list")
    if len(operations) > discovery.MAX_OPERATIONS:
        raise e.PayloadTooLarge(f"at most {discovery.MAX_OPERATIONS} operations per Bulk "
                                "request (maxOperations)")
    fail_on_errors = _int("failOnErrors", body.get("failOnErrors"))
    results = await run_in_threadpool(run_bulk, ctx_of(request), principal, _base(request),
                                      operations, fail_on_errors, _request_id(request),
                                      quirks=QUIRKS)
    return ScimResponse({"schemas": [BULK_RESPONSE_SCHEMA], "Operations": results})


P = "/scim/v2/{tenant}"
ALL = ["GET", "POST", "PUT", "PATCH", "DELETE"]  # the endpoint answers 405 itself, as SCIM
ROUTES = [
    (f"{P}/.search", scim_endpoint(_root_search, methods=("POST",)), ALL),
    (f"{P}/Users/.search", search("User"), ALL),
    (f"{P}/Groups/.search", search("Group"), ALL),
    (f"{P}/Users", collection("User"), ALL),
    (f"{P}/Users/{{id}}", resource("User"), ALL),
    (f"{P}/Groups", collection("Group"), ALL),
    (f"{P}/Groups/{{id}}", resource("Group"), ALL),
    (f"{P}/Bulk", scim_endpoint(_bulk, methods=("POST",)), ALL),
    (f"{P}/ServiceProviderConfig",
     scim_endpoint(_service_provider_config, methods=("GET",)), ALL),
    (f"{P}/Schemas", scim_endpoint(_schemas, methods=("GET",)), ALL),
    (f"{P}/Schemas/{{id}}", scim_endpoint(_schemas, methods=("GET",)), ALL),
    (f"{P}/ResourceTypes", scim_endpoint(_resource_types, methods=("GET",)), ALL),
    (f"{P}/ResourceTypes/{{id}}", scim_endpoint(_resource_types, methods=("GET",)), ALL),
    (f"{P}/{{rest:path}}", scim_endpoint(_unknown, methods=tuple(ALL)), ALL),
]
