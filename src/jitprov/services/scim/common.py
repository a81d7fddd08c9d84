"""What the SCIM Users and Groups use cases share: the rendered answer, the retry of a unit of
work that lost a race, ``If-Match``, query parsing and paging, and the translation of store
and service errors to RFC 7644 errors (section 3.12)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from jitprov.core.errors import (
    Conflict,
    DatabaseNotReady,
    InvalidInput,
    NotFound,
    RaceLost,
)
from jitprov.protocols.scim import errors as e
from jitprov.protocols.scim.discovery import MAX_RESULTS
from jitprov.protocols.scim.filter import Filter, FilterError, parse_filter
from jitprov.protocols.scim.limits import check_filter
from jitprov.protocols.scim.resources import parse_etag
from jitprov.store import scim as store

log = logging.getLogger("jitprov.scim")

MAX_ATTEMPTS = 5

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rendered:
    """A response body and the resource's version (for the ``ETag`` header)."""

    body: dict[str, Any] | None
    version: int | None = None


def retrying(fn: Callable[[], T]) -> T:
    """Run a unit of work again when it lost a unique-key race (the rerun then sees the
    winner's row and answers accordingly)."""
    for _attempt in range(MAX_ATTEMPTS - 1):
        try:
            return fn()
        except RaceLost:
            continue
    return fn()


def check_if_match(if_match: str | None, version: int) -> None:
    """RFC 7644 section 3.14: a stale ``If-Match`` is 412 Precondition Failed."""
    if if_match is None:
        return
    tags = parse_etag(if_match)
    if "*" not in tags and str(version) not in tags:
        raise e.PreconditionFailed(f"the resource is at version W/\"{version}\"")


def parse_query_filter(text: str | None) -> Filter | None:
    """The filter of a query (none for an empty one). Raises InvalidFilter."""
    if text is None or not text.strip():
        return None
    check_filter(text)
    try:
        return parse_filter(text)
    except FilterError as exc:
        raise e.InvalidFilter(str(exc)) from None


def page(start_index: int | None, count: int | None) -> tuple[int, int]:
    """RFC 7644 section 3.4.2.4: startIndex < 1 is 1; count < 0 is 0; count is capped at
    ``maxResults``."""
    start = 1 if start_index is None or start_index < 1 else start_index
    size = 100 if count is None else max(0, min(count, MAX_RESULTS))
    return start, size


def translate_store_error(exc: Exception) -> e.ScimError:
    """The RFC 7644 error of a store refusal (one of :data:`STORE_ERRORS`)."""
    if isinstance(exc, store.Uniqueness):
        return e.Uniqueness(str(exc))
    if isinstance(exc, store.InvalidFilter):
        return e.InvalidFilter(str(exc))
    if isinstance(exc, store.UnknownMembers):
        return e.InvalidValue(str(exc))
    if isinstance(exc, store.VersionMismatch):
        return e.PreconditionFailed(str(exc))
    return e.InvalidValue(str(exc))


STORE_ERRORS = (store.Uniqueness, store.InvalidFilter, store.UnknownMembers,
                store.VersionMismatch)


def as_scim_error(exc: Exception) -> e.ScimError:
    """A SCIM error for anything the services raise on purpose; Internal otherwise."""
    if isinstance(exc, e.ScimError):
        return exc
    if isinstance(exc, NotFound):
        return e.NotFound(str(exc))
    if isinstance(exc, RaceLost):
        return e.Uniqueness("a concurrent request wrote the same resource; retry")
    if isinstance(exc, DatabaseNotReady):
        log.error("database not ready: %s", exc)
        error = e.ScimError("the service is temporarily unavailable; try again in a moment")
        error.status = 503
        return error
    if isinstance(exc, Conflict):
        return e.Uniqueness(str(exc))
    if isinstance(exc, InvalidInput):
        return e.InvalidValue(str(exc))
    return e.Internal("an unexpected error occurred; the administrator can find it in the "
                      "server log by its request id")
