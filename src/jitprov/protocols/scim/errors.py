"""SCIM errors, each carrying its wire code (RFC 7644 section 3.12).

``status`` is the HTTP status, ``scim_type`` the ``scimType`` of the error body (None where the
RFC defines none for that status). ``web/errors.py`` is the one place that renders them.
"""

from __future__ import annotations

from jitprov.core.errors import JitprovError

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"


class ScimError(JitprovError):
    """Base of every SCIM protocol error. ``str(err)`` is the ``detail``: never internals."""

    code = "scim_error"
    status = 400
    scim_type: str | None = None

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def as_body(self) -> dict[str, object]:
        """The RFC 7644 section 3.12 error body (``status`` is a string there)."""
        body: dict[str, object] = {"schemas": [ERROR_SCHEMA], "status": str(self.status),
                                   "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


class InvalidFilter(ScimError):
    """The filter syntax was invalid or the attribute and comparison are not supported."""

    scim_type = "invalidFilter"


class InvalidSyntax(ScimError):
    """The request body could not be parsed or violates the schema."""

    scim_type = "invalidSyntax"


class InvalidValue(ScimError):
    """A required value was missing, or a value is not compatible with the attribute."""

    scim_type = "invalidValue"


class InvalidPath(ScimError):
    """The PATCH ``path`` is invalid or does not name an attribute of the resource."""

    scim_type = "invalidPath"


class NoTarget(ScimError):
    """The PATCH ``path`` filter yields no match (RFC 7644 section 3.5.2.3)."""

    scim_type = "noTarget"


class Mutability(ScimError):
    """The request tries to modify an immutable or read-only attribute."""

    scim_type = "mutability"


class Uniqueness(ScimError):
    """A unique attribute value is already in use: always 409 ``uniqueness``."""

    status = 409
    scim_type = "uniqueness"


class TooMany(ScimError):
    """The query would return more results than the server accepts."""

    scim_type = "tooMany"


class InvalidVersion(ScimError):
    """The request's SCIM protocol version is not supported."""

    scim_type = "invalidVers"


class NotFound(ScimError):
    """The resource, or the endpoint, does not exist."""

    status = 404


class PreconditionFailed(ScimError):
    """``If-Match`` named a version that is not the resource's current one."""

    status = 412


class PayloadTooLarge(ScimError):
    """The request body is larger than ``maxPayloadSize`` (or a Bulk request carries more
    than ``maxOperations``)."""

    status = 413


class Unauthorized(ScimError):
    """No bearer token, or one that is unknown, revoked, expired or of another tenant."""

    status = 401


class MethodNotAllowed(ScimError):
    """The endpoint does not take this HTTP method."""

    status = 405


class NotImplemented_(ScimError):
    """A feature the ServiceProviderConfig does not advertise."""

    status = 501


class Internal(ScimError):
    """An unexpected failure: the body never carries its details (the log has them)."""

    status = 500
