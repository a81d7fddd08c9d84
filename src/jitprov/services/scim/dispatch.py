"""The use cases of each SCIM resource type, in one typed table: the routes and Bulk pick them
by resource type (``RESOURCES[kind].patch``), never by building a function's name."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from jitprov.protocols.scim.quirks import Quirks
from jitprov.protocols.scim.resources import Kind, Projection
from jitprov.services import tracing
from jitprov.services.context import ServiceContext
from jitprov.services.scim import groups, users
from jitprov.services.scim.common import Rendered
from jitprov.services.scim.tokens import ScimPrincipal

F = TypeVar("F", bound=Any)


class Get(Protocol):
    def __call__(self, ctx: ServiceContext, principal: ScimPrincipal, base: str,
                 resource_id: str, projection: Projection = ..., /) -> Rendered: ...


class Query(Protocol):
    def __call__(self, ctx: ServiceContext, principal: ScimPrincipal, base: str, /, *,
                 filter_text: str | None, sort_by: str | None = ...,
                 descending: bool = ..., start_index: int | None = ...,
                 count: int | None = ..., projection: Projection = ...) -> dict[str, Any]: ...


class Create(Protocol):
    def __call__(self, ctx: ServiceContext, principal: ScimPrincipal, base: str,
                 payload: object, /, *, request_id: str | None = ...) -> Rendered: ...


class Replace(Protocol):
    def __call__(self, ctx: ServiceContext, principal: ScimPrincipal, base: str,
                 resource_id: str, payload: object, /, *, if_match: str | None = ...,
                 request_id: str | None = ...) -> Rendered: ...


class Patch(Protocol):
    def __call__(self, ctx: ServiceContext, principal: ScimPrincipal, base: str,
                 resource_id: str, body: object, /, *, if_match: str | None = ...,
                 quirks: Quirks = ..., request_id: str | None = ...,
                 projection: Projection = ...) -> Rendered: ...


class Delete(Protocol):
    def __call__(self, ctx: ServiceContext, principal: ScimPrincipal, resource_id: str, /, *,
                 if_match: str | None = ..., request_id: str | None = ...) -> None: ...


@dataclass(frozen=True, slots=True)
class ResourceService:
    """What a SCIM client can do to one resource type."""

    get: Get
    query: Query
    create: Create
    replace: Replace
    patch: Patch
    delete: Delete


def _traced(kind: Kind, operation: str, use_case: F) -> F:
    """``use_case`` inside a ``jitprov.scim`` span when tracing is on (``services.tracing``)."""
    @functools.wraps(use_case)
    def run(*args: Any, **kwargs: Any) -> Any:
        with tracing.span("jitprov.scim", resource=kind, operation=operation):
            return use_case(*args, **kwargs)
    return cast(F, run)


RESOURCES: dict[Kind, ResourceService] = {
    "User": ResourceService(get=_traced("User", "get", users.get_user),
                            query=_traced("User", "query", users.query_users),
                            create=_traced("User", "create", users.create_user),
                            replace=_traced("User", "replace", users.replace_user),
                            patch=_traced("User", "patch", users.patch_user),
                            delete=_traced("User", "delete", users.delete_user)),
    "Group": ResourceService(get=_traced("Group", "get", groups.get_group),
                             query=_traced("Group", "query", groups.query_groups),
                             create=_traced("Group", "create", groups.create_group),
                             replace=_traced("Group", "replace", groups.replace_group),
                             patch=_traced("Group", "patch", groups.patch_group),
                             delete=_traced("Group", "delete", groups.delete_group)),
}
