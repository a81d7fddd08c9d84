"""The configuration file of ``jitprov export`` and ``jitprov apply``, as pydantic models.

Strict: an unknown key, a value of the wrong type (``"30"`` for 30, ``1`` for true) or a
missing required key is refused with its key path. The published JSON Schema
(``docs/jitprov-config.schema.json``) is generated from :class:`ConfigFile`.

A tenant's attributes (``name``, ``policy``, ``frontline``) are the whole truth: a key left
out means its default, the value a new tenant has. Its objects (``connections``, ``domains``,
``webhooks``) are created and updated from the file; one absent from the file is deleted only
under ``--prune``. Secrets are never in the file: a ``${ENV_VAR}`` reference stands for each,
resolved from the environment of ``jitprov apply`` (never a ``JITPROV_*`` or ``PG*``
variable: those are jitprov's own settings and database credentials).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from jitprov.services import mapping_preview
from jitprov.services.devices import SHIPPED_LOCALES
from jitprov.services.lifecycle import MAX_POLICY_DAYS, MIN_AUDIT_RETENTION_DAYS

#: the one version of the file format
VERSION = 1
SECRET_REF = r"^\$\{[A-Z_][A-Z0-9_]*\}$"  # noqa: S105 - a pattern

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")]
SecretRef = Annotated[str, StringConstraints(pattern=SECRET_REF), Field(
    description="a reference ${ENV_VAR} to an environment variable of `jitprov apply` that "
                "holds the secret; never the secret itself, never a JITPROV_* or PG* "
                "variable")]
Days = Annotated[int, Field(ge=1, le=MAX_POLICY_DAYS)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TenantPolicy(_Strict):
    """Lifecycle, audit retention, recorded claims and SCIM (``jitprov tenant set-policy``,
    ``jitprov mapping retention``). ``null`` turns a lifecycle step off."""

    dormant_warn_days: Days | None = None
    dormant_deactivate_days: Days | None = None
    delete_after_days: Days | None = None
    audit_retention_days: Annotated[int, Field(
        ge=MIN_AUDIT_RETENTION_DAYS, le=MAX_POLICY_DAYS)] | None = Field(
        None, description="null: keep audit events forever")
    claims_retention_days: int = Field(
        mapping_preview.DEFAULT_CLAIMS_RETENTION.days, ge=0,
        le=mapping_preview.MAX_CLAIMS_RETENTION_DAYS)
    scim_delete: Literal["deactivate", "erase"] = "deactivate"
    scim_on_existing: Literal["conflict", "adopt"] = "conflict"


class Frontline(_Strict):
    """Shared devices (``jitprov device set-policy``)."""

    idle_seconds: int = Field(300, ge=1, le=24 * 3600)
    shifts: list[Annotated[str, StringConstraints(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")]] = []
    timezone: str = "UTC"
    roles_max_age_seconds: int = Field(7 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    offline_seconds: int = Field(1800, ge=60, le=12 * 3600)
    locale: str = Field("", description="the language of the tenant's kiosk and account "
                                        "pages; empty: each reader's browser language",
                        json_schema_extra={"enum": ["", *SHIPPED_LOCALES]})

    @field_validator("locale")
    @classmethod
    def _shipped(cls, locale: str) -> str:
        if locale and locale not in SHIPPED_LOCALES:
            raise ValueError(f"language {locale!r} is not one of the shipped ones: "
                             f"{', '.join(SHIPPED_LOCALES)}")
        return locale


class MappingFile(_Strict):
    """A mapping kept in its own file, relative to the configuration file."""

    file: str = Field(min_length=1)


class OidcSettings(_Strict):
    """An OpenID Connect provider (``jitprov connection add-oidc``; the README's "Sign in
    with OpenID Connect" and "Requiring MFA" explain each setting)."""

    issuer: str
    client_id: str = Field(min_length=1, max_length=500)
    client_secret: SecretRef | None = Field(
        None, description="for client_secret_basic and client_secret_post; private_key_jwt "
                          "uses a key jitprov makes")
    scopes: list[str] = ["openid", "email", "profile"]
    token_auth_method: Literal["client_secret_basic", "client_secret_post",
                               "private_key_jwt"] = "client_secret_basic"  # noqa: S105
    clock_skew_seconds: int = Field(60, ge=0, le=600)
    id_token_algs: list[str] = ["RS256", "PS256", "ES256"]
    userinfo: bool = False
    discovery_ttl_seconds: int = Field(3600, ge=60)
    jwks_refresh_interval_seconds: int = Field(60, ge=1)
    idp_logout: bool = True
    require_mfa: bool = False
    accepted_auth_contexts: list[str] = []
    entra_multi_tenant: bool = False
    entra_allowed_tenants: list[str] = []
    entra_any_tenant: bool = False
    google_hosted_domains: list[str] = []


class SamlSettings(_Strict):
    """A SAML 2.0 IdP (``jitprov connection add-saml``). With ``metadata_url`` the IdP's
    fields (entity id, SSO and SLO URLs, certificates) follow its metadata, re-read every
    ``metadata_refresh_seconds``: the file's values create the connection, later applies
    leave them to the refresh."""

    idp_entity_id: str = Field(min_length=1, max_length=1024)
    idp_sso_url: str
    idp_certs: list[str] = Field(min_length=1, description="PEM certificates")
    want_authn_requests_signed: bool = False
    metadata_url: str | None = None
    metadata_refresh_seconds: int = Field(3600, ge=60, le=7 * 86400)
    allow_idp_initiated: bool = False
    clock_skew_seconds: int = Field(120, ge=0, le=600)
    require_signed_assertion: bool = False
    sign_authn_requests: bool = Field(
        True, description="false: sign AuthnRequests only when want_authn_requests_signed "
        "(what the IdP metadata's WantAuthnRequestsSigned says: state it here, or let "
        "metadata_url's refresh read it); the SP metadata then says "
        "AuthnRequestsSigned=\"false\"")
    allow_email_name_id: bool = True
    max_response_bytes: int = Field(256 * 1024, ge=4096, le=4 * 1024 * 1024)
    allow_sha1: bool = False
    require_mfa: bool = False
    accepted_auth_contexts: list[str] = []
    idp_slo_url: str | None = None
    idp_slo_response_url: str | None = None
    idp_slo_post_url: str | None = None
    idp_slo_post_response_url: str | None = None


#: the SAML fields a metadata URL keeps up to date
SAML_METADATA_FIELDS = frozenset({
    "idp_entity_id", "idp_sso_url", "idp_certs", "want_authn_requests_signed", "idp_slo_url",
    "idp_slo_response_url", "idp_slo_post_url", "idp_slo_post_response_url"})


class MockSettings(_Strict):
    """The built-in demo IdP of ``jitprov dev`` (refused by ``serve``); no settings."""


class Connection(_Strict):
    """One connection: exactly one of ``oidc``, ``saml`` or ``mock`` says its kind."""

    enabled: bool = True
    mapping: str | MappingFile = Field(description="the mapping YAML inline, or {file: PATH}")
    oidc: OidcSettings | None = None
    saml: SamlSettings | None = None
    mock: MockSettings | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Connection:
        if sum(x is not None for x in (self.oidc, self.saml, self.mock)) != 1:
            raise ValueError("give exactly one of oidc, saml or mock")
        return self

    @property
    def kind(self) -> str:
        return "oidc" if self.oidc else "saml" if self.saml else "mock"


class Webhook(_Strict):
    """An endpoint (``jitprov webhooks add``), known by its URL within the tenant."""

    url: str = Field(min_length=1, max_length=2000, description=(
        "the http(s) URL, or a ${ENV_VAR} reference to it (what `jitprov export` writes "
        "when the URL has a query, a fragment or a token-like path segment)"))
    events: list[str] = Field(["*"], description="event types, or * for all")
    secret: SecretRef


class Tenant(_Strict):
    name: str | None = Field(None, min_length=1, max_length=200,
                             description="display name (default: the slug)")
    policy: TenantPolicy = TenantPolicy()
    frontline: Frontline = Frontline()
    connections: dict[Slug, Connection] = {}
    domains: dict[str, Slug] = Field(
        {}, description="verified email domain -> the tenant's connection its people sign "
                        "in through (home-realm discovery)")
    webhooks: list[Webhook] = []


class ConfigFile(_Strict):
    """A jitprov configuration: the tenants it names and what each holds."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              title="jitprov configuration")

    version: Literal[1]
    tenants: dict[Slug, Tenant] = {}


def json_schema() -> dict[str, object]:
    """The published JSON Schema of the file."""
    schema = ConfigFile.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "https://jitprov.dev/schemas/jitprov-config.schema.json", **schema}
