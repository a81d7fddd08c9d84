"""The configuration of one OIDC connection, with its IdP quirks as named flags."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from jitprov.core.auth_context import check_accepted_auth_contexts
from jitprov.core.errors import InvalidInput
from jitprov.protocols.urls import is_secure_url

TENANT_ID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                       r"[0-9a-fA-F]{12}$")

TokenAuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt"]

#: Asymmetric JWS algorithms only: an HMAC "signature" keyed with a public key is forgeable.
ASYMMETRIC_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                   "ES512", "EdDSA")


class OidcConfig(BaseModel):
    """What ``connection add-oidc`` stores (the client secret goes to the sealed secrets)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str
    client_id: str = Field(min_length=1, max_length=500)
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    token_auth_method: TokenAuthMethod = "client_secret_basic"  # noqa: S105 - a method name
    clock_skew_seconds: int = Field(60, ge=0, le=600)
    id_token_algs: tuple[str, ...] = ("RS256", "PS256", "ES256")
    userinfo: bool = False
    discovery_ttl_seconds: int = Field(3600, ge=60)
    #: private_key_jwt: the public half of the connection's key, published at
    #: ``/sso/{connection}/oidc/jwks.json`` for the IdP to fetch
    client_public_jwk: dict[str, str] | None = None
    jwks_refresh_interval_seconds: int = Field(60, ge=1)
    #: RP-initiated logout: ``POST /logout`` also ends the session at the provider (when it
    #: publishes an ``end_session_endpoint``); off, only the jitprov session ends
    idp_logout: bool = True
    #: refuse a sign-in whose ID token reports no accepted ``acr``/``amr`` value (the rule of
    #: ``core/auth_context.py``); the accepted acr values are requested as ``acr_values``
    require_mfa: bool = Field(False, strict=True)  # strict: read raw by the login flow
    #: with ``require_mfa``: accepted ``acr`` and ``amr`` values (none listed: amr ``mfa``)
    accepted_auth_contexts: tuple[str, ...] = ()
    # -- IdP quirks, each named after the vendor's behaviour --------------------------------
    #: Entra ID "common"/"organizations" endpoints: the issuer is a template
    #: ``https://login.microsoftonline.com/{tenantid}/v2.0`` checked against the ``tid`` claim.
    entra_multi_tenant: bool = False
    #: with ``entra_multi_tenant``: the Entra tenant ids allowed to sign in. Required, unless
    #: ``entra_any_tenant`` says that every Entra tenant and personal Microsoft account may
    #: sign in (their admins, not yours, vouch for the emails they assert).
    entra_allowed_tenants: tuple[str, ...] = ()
    entra_any_tenant: bool = False
    #: Google Workspace: only these hosted domains (the ``hd`` claim) may sign in.
    google_hosted_domains: tuple[str, ...] = ()

    @field_validator("issuer")
    @classmethod
    def _issuer_is_https_or_loopback(cls, value: str) -> str:
        # Kept exactly as given: Auth0's issuer ends in "/", and iss must match it exactly.
        if not is_secure_url(value):
            raise ValueError("the issuer must be an https URL (http only on loopback)")
        return value

    @model_validator(mode="after")
    def _entra_tenants_are_chosen(self) -> OidcConfig:
        if self.entra_multi_tenant:
            if "{tenantid}" not in self.issuer:
                raise ValueError("entra_multi_tenant needs an issuer with {tenantid}")
            if not self.entra_allowed_tenants and not self.entra_any_tenant:
                raise ValueError("entra_multi_tenant needs entra_allowed_tenants (or "
                                 "entra_any_tenant to accept every Entra tenant)")
            bad = [t for t in self.entra_allowed_tenants if not TENANT_ID.match(t)]
            if bad:
                raise ValueError(f"not Entra tenant ids (GUIDs): {', '.join(bad)}")
        return self

    @field_validator("scopes")
    @classmethod
    def _scopes_include_openid(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("the scopes must include openid")
        return value

    @model_validator(mode="after")
    def _auth_contexts_are_values(self) -> OidcConfig:
        try:
            check_accepted_auth_contexts(self.accepted_auth_contexts,
                                         require_mfa=self.require_mfa)
        except ValueError as exc:
            raise ValueError(f"accepted_auth_contexts {exc}") from None
        return self

    @field_validator("id_token_algs")
    @classmethod
    def _algs_are_asymmetric(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [alg for alg in value if alg not in ASYMMETRIC_ALGS]
        if bad or not value:
            raise ValueError(f"ID token algorithms must be among {', '.join(ASYMMETRIC_ALGS)}; "
                             f"refused: {', '.join(bad) or '(none given)'}")
        return value

    @classmethod
    def parse(cls, config: Mapping[str, object]) -> OidcConfig:
        """Validate a stored or typed configuration. Raises InvalidInput naming the field."""
        try:
            return cls.model_validate(dict(config))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "config"
            raise InvalidInput(f"OIDC connection {where}: {first['msg']}") from None

    def discovery_issuer(self) -> str:
        """The issuer whose discovery document to fetch (the template's ``common`` form)."""
        return self.issuer.replace("{tenantid}", "common")


class OidcKind:
    name = "oidc"
    dev_only = False

    def validate_config(self, config: Mapping[str, object]) -> None:
        OidcConfig.parse(config)
