"""SCIM Bulk (RFC 7644 section 3.7): the operations of one request, in order, each its own
transaction through the same use cases as the single-resource endpoints. ``bulkId:x`` in a
path or in data is the id that the operation with ``bulkId`` x created. Every failure is that
operation's RFC 7644 error (never the request's); an unexpected one is logged, its answer a
bare 500 body."""

from __future__ import annotations

import logging
from typing import Any

from jitprov.core.errors import JitprovError
from jitprov.protocols.scim import errors as e
from jitprov.protocols.scim.quirks import Quirks
from jitprov.protocols.scim.resources import Kind
from jitprov.services.context import ServiceContext
from jitprov.services.scim.common import Rendered, as_scim_error
from jitprov.services.scim.dispatch import RESOURCES
from jitprov.services.scim.tokens import ScimPrincipal

log = logging.getLogger("jitprov.scim")


def run_bulk(ctx: ServiceContext, principal: ScimPrincipal, base: str, operations: list[Any],
             fail_on_errors: int | None, request_id: str | None, *,
             quirks: Quirks = Quirks()) -> list[dict[str, Any]]:
    """Each operation in order, each its own transaction; ``bulkId:x`` in a path or data is
    the id the operation with ``bulkId`` x created. Stops after ``failOnErrors`` errors."""
    ids: dict[str, str] = {}
    results: list[dict[str, Any]] = []
    errors = 0
    for raw in operations:
        if fail_on_errors is not None and fail_on_errors > 0 and errors >= fail_on_errors:
            break
        outcome = _bulk_one(ctx, principal, base, raw, ids, request_id, quirks)
        if int(outcome["status"]) >= 400:
            errors += 1
        results.append(outcome)
    return results


def _resolve(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str) and value.startswith("bulkId:"):
        key = value[len("bulkId:"):]
        if key not in ids:
            raise e.InvalidValue(f"bulkId {key!r} is not (yet) the id of a created resource")
        return ids[key]
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, ids) for k, v in value.items()}
    return value


def _bulk_one(ctx: ServiceContext, principal: ScimPrincipal, base: str, raw: Any,
              ids: dict[str, str], request_id: str | None, quirks: Quirks) -> dict[str, Any]:
    outcome: dict[str, Any] = {}
    try:
        if not isinstance(raw, dict):
            raise e.InvalidSyntax("each Bulk operation is an object")
        method = str(raw.get("method", "")).upper()
        outcome["method"] = method
        if isinstance(raw.get("bulkId"), str):
            outcome["bulkId"] = raw["bulkId"]
        path = raw.get("path")
        if not isinstance(path, str):
            raise e.InvalidSyntax("each Bulk operation needs a path")
        parts = [p for p in path.split("/") if p]
        if len(parts) not in (1, 2) or parts[0] not in ("Users", "Groups"):
            raise e.InvalidPath(f"Bulk path {path!r} is not /Users[/id] or /Groups[/id]")
        kind: Kind = "User" if parts[0] == "Users" else "Group"
        service = RESOURCES[kind]
        version = raw.get("version")
        if_match = version if isinstance(version, str) else None
        if len(parts) == 1:
            if method != "POST":
                raise e.InvalidSyntax(f"{method} needs a resource path (/{parts[0]}/id)")
            if "bulkId" not in outcome:
                raise e.InvalidValue("a Bulk POST needs a bulkId")
            rendered = service.create(ctx, principal, base, _resolve(raw.get("data"), ids),
                                      request_id=request_id)
            assert rendered.body is not None  # noqa: S101 - a creation answers the resource
            ids[outcome["bulkId"]] = rendered.body["id"]
            return _bulk_done(outcome, rendered, "201")
        resource_id = _resolve(parts[1], ids) if parts[1].startswith("bulkId:") else parts[1]
        if method == "DELETE":
            service.delete(ctx, principal, resource_id, if_match=if_match,
                           request_id=request_id)
            outcome.update(location=f"{base}/{parts[0]}/{resource_id}", status="204")
            return outcome
        data = _resolve(raw.get("data"), ids)
        if method == "PUT":
            rendered = service.replace(ctx, principal, base, resource_id, data,
                                       if_match=if_match, request_id=request_id)
        elif method == "PATCH":
            rendered = service.patch(ctx, principal, base, resource_id, data,
                                     if_match=if_match, quirks=quirks, request_id=request_id)
        else:
            raise e.InvalidSyntax(f"unknown Bulk method {method!r}")
        outcome["location"] = f"{base}/{parts[0]}/{resource_id}"
        return _bulk_done(outcome, rendered, "200" if rendered.body is not None else "204")
    except JitprovError as exc:
        error = as_scim_error(exc)
    except RecursionError:
        error = e.InvalidSyntax("the operation is nested too deeply")
    except Exception:
        log.exception("unhandled SCIM Bulk error", extra={"request_id": request_id})
        error = as_scim_error(RuntimeError())
    outcome.update(status=str(error.status), response=error.as_body())
    return outcome


def _bulk_done(outcome: dict[str, Any], rendered: Rendered, status: str) -> dict[str, Any]:
    if rendered.body is not None:
        outcome["location"] = rendered.body["meta"]["location"]
    if rendered.version is not None:
        outcome["version"] = f'W/"{rendered.version}"'
    outcome["status"] = status
    return outcome
