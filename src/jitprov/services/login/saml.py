"""SAML sign-in: the AuthnRequest that starts it (HTTP-Redirect) and the ACS (Response ->
account).

SP-initiated: the login request row keeps the AuthnRequest ID and the browser binding
server-side (valid across nodes, single use, expiring); RelayState carries the row's ``state``.
IdP-initiated (unsolicited) responses are refused unless the connection sets
``allow_idp_initiated``; their RelayState may then only be a local path. Every assertion ID is
remembered until the assertion expires (the replay cache, shared by every node through the
database). Every failure is audited as ``login.failed`` with its reason and shown as a
readable page; no account or session is written for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
from collections.abc import Callable

import httpx

from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.protocols.saml import (
    IdpMetadata,
    SamlConfig,
    SamlError,
    SamlKind,
    SpSettings,
    ValidatedAssertion,
    build_authn_request,
    build_sp_metadata,
    parse_idp_metadata,
    sp_settings,
    validate_response,
)
from jitprov.protocols.urls import is_secure_url
from jitprov.services.common import LoginRefused
from jitprov.services.context import ServiceContext
from jitprov.services.login.failures import failures_audited, record_login_failure
from jitprov.services.login.flow import LoginResult, provision_on_login
from jitprov.services.login.state import EXPIRED, LoginState, open_login_request
from jitprov.services.sessions import safe_return_to
from jitprov.store.records import ConnectionRecord
from jitprov.store.unit_of_work import UnitOfWork

log = logging.getLogger("jitprov.saml")

#: the sealed secret holding the SP private key (PEM)
SP_KEY_SECRET = "sp_private_key"  # noqa: S105 - a field name
#: IdP metadata documents larger than this are refused (a federation aggregate is larger:
#: point --idp-metadata-url at the IdP's own document)
MAX_METADATA_BYTES = 5 * 1024 * 1024
METADATA_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
#: the ``state`` of a login request: ``secrets.token_urlsafe(32)``
_STATE = re.compile(r"[A-Za-z0-9_-]{43}")
_SP_CACHE_MAX = 256
#: the keys of a SAML session's sealed logout data (see ``_sealed_name_id``)
NAME_ID_FORMAT = "saml_name_id_format"
NAME_QUALIFIER = "saml_name_qualifier"
SP_NAME_QUALIFIER = "saml_sp_name_qualifier"

_SP_LOCK = threading.Lock()
_SP_CACHE: dict[str, SpSettings] = {}


#: parsed configurations by the identity of the configuration object they come from (kept
#: alive in the entry, so the identity cannot be reused): a connection record, cached per
#: process for a few seconds, is parsed once, however many times a login asks
_PARSED: dict[int, tuple[object, SamlConfig]] = {}


def connection_config(conn: ConnectionRecord) -> SamlConfig:
    """The connection's SAML configuration (parsed once per record read: start, bounce and
    ACS of one login share it)."""
    if conn.kind != "saml":
        raise InvalidInput(f"connection {conn.slug} is not a SAML connection")
    cached = _PARSED.get(id(conn.config))
    if cached is not None and cached[0] is conn.config:
        return cached[1]
    config = SamlConfig.parse(conn.config)
    with _SP_LOCK:
        if len(_PARSED) >= _SP_CACHE_MAX:
            _PARSED.clear()
        _PARSED[id(conn.config)] = (conn.config, config)
    return config


def sp_for(ctx: ServiceContext, conn: ConnectionRecord, config: SamlConfig,
           base_url: str) -> SpSettings:
    """The connection's SP settings, with its private key unsealed once per process (cached
    by the digest of the sealed secrets, the certificate and the URL: a new key or base URL
    is a new entry, never a stale one)."""
    digest = hashlib.sha256("\0".join((conn.secrets or "", config.sp_certificate, base_url,
                                       conn.slug)).encode()).hexdigest()
    cached = _SP_CACHE.get(digest)
    if cached is not None:
        return cached
    key = ctx.secretbox.open(conn.secrets).get(SP_KEY_SECRET, "")
    if not key or not config.sp_certificate:
        raise InvalidInput(f"connection {conn.slug} has no SP key pair; register it again "
                           "with `jitprov connection add-saml`")
    sp = sp_settings(base_url, conn.slug, certificate=config.sp_certificate,
                     private_key_pem=key)
    with _SP_LOCK:
        if len(_SP_CACHE) >= _SP_CACHE_MAX:
            _SP_CACHE.clear()
        _SP_CACHE[digest] = sp
    return sp


def sp_metadata(ctx: ServiceContext, connection_slug: str, *, base_url: str) -> bytes:
    """The SP metadata XML to give the IdP: ``AuthnRequestsSigned`` as the connection signs
    them (``signs_authn_requests``: by default "true", every request signed with the
    connection's SP key) and ``WantAssertionsSigned`` as its ``require_signed_assertion``.
    Raises NotFound, InvalidInput."""
    conn = ctx.connections.get(connection_slug)
    config = connection_config(conn)
    return build_sp_metadata(sp_for(ctx, conn, config, base_url),
                             want_assertions_signed=config.require_signed_assertion,
                             authn_requests_signed=config.signs_authn_requests)


class SamlConnection(SamlKind):
    """Kind ``saml``: the protocol's configuration check, and the AuthnRequest (over
    HTTP-Redirect) that starts a login."""

    def starts_offline(self, ctx: ServiceContext, conn: ConnectionRecord) -> bool:
        """Always: the AuthnRequest is built and signed from the connection and its SP
        key."""
        return True

    #: the IdP answers with a form the browser posts from the IdP's site (HTTP-POST binding)
    answers_cross_site_post = True

    def login_request(self, ctx: ServiceContext, conn: ConnectionRecord, state: str, *,
                      base_url: str, login_hint: str | None = None, offline: bool = False
                      ) -> tuple[dict[str, object], str]:
        """(what the login request keeps: the AuthnRequest ID; the IdP's SSO URL with the
        AuthnRequest). The state travels as RelayState and comes back with the Response.
        ``login_hint`` is not sent: SAML has no hint every IdP accepts (a ``<Subject>`` in
        the AuthnRequest makes some refuse the request). Raises a JitprovError when the
        connection cannot build one (no SP key, a configuration that does not parse)."""
        config = connection_config(conn)
        sp = sp_for(ctx, conn, config, base_url)
        authn = build_authn_request(sp, config, relay_state=state, now=ctx.clock())
        return {"request_id": authn.id}, authn.redirect_url


def classify_relay_state(relay_state: str | None, base_url: str) -> tuple[str, str | None]:
    """("sp", state) for the state of a login this SP started; ("idp", local path) for an
    IdP-initiated response (no RelayState, a local path, or an absolute URL of this very
    server); ("refused", None) for anything else (another site, a malformed value)."""
    value = relay_state or ""
    if not value:
        return "idp", "/"
    if _STATE.fullmatch(value):
        return "sp", value
    own = base_url.rstrip("/")
    if value.startswith(own + "/"):
        value = value[len(own):]
    if value.startswith("/") and safe_return_to(value) == value:
        return "idp", value
    return "refused", None


def complete_saml_login(ctx: ServiceContext, connection_slug: str, saml_response: str,
                        relay_state: str | None, *, browser: str | None, base_url: str,
                        request_id: str | None, user_agent: str | None = None,
                        previous_session: str | None = None) -> LoginResult:
    """The ACS: find the login this browser started (SP-initiated), verify the Response
    against its AuthnRequest ID, refuse a replayed assertion, then provision, spending the
    login request in the provisioning transaction (single use: of two ACS requests for one
    login, one wins). Raises LoginRefused, SamlError or InvalidInput, each audited as
    ``login.failed`` (a denial by the mapping as ``login.denied``); nothing else is written,
    and a refused request never spends a login it could not prove to be its own.

    :func:`check_saml_response` then :func:`finish_saml_login`: the route runs them apart,
    so a provisioning that has to wait for another writer runs again alone, without the
    Response's verification."""
    checked = check_saml_response(ctx, connection_slug, saml_response, relay_state,
                                  browser=browser, base_url=base_url, request_id=request_id)
    return finish_saml_login(ctx, checked, user_agent=user_agent,
                             previous_session=previous_session)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckedResponse:
    """A SAML Response verified for its login (nothing of it spent or recorded yet)."""

    conn: ConnectionRecord
    config: SamlConfig
    assertion: ValidatedAssertion
    #: the SP-initiated login it answers, opened from the browser's binding cookie
    login: LoginState | None
    #: where an IdP-initiated login goes (a local path), None for an SP-initiated one
    return_to: str | None
    request_id: str | None


def check_saml_response(ctx: ServiceContext, connection_slug: str, saml_response: str,
                        relay_state: str | None, *, browser: str | None, base_url: str,
                        request_id: str | None) -> CheckedResponse:
    """The ACS's first step: the login the RelayState names (this browser's), and the
    Response verified against its AuthnRequest ID. Reads only, and writes a refusal's
    ``login.failed``."""
    conn = ctx.connections.get(connection_slug)
    kind, value = classify_relay_state(relay_state, base_url)
    expected: str | None = None
    login: LoginState | None = None
    with failures_audited(ctx, conn.slug, request_id):
        config = connection_config(conn)
        if kind == "refused":
            raise LoginRefused("relay_state_refused", "the identity provider sent the "
                               "sign-in to an address outside this site; start again from "
                               "the application", request_id)
        if kind == "idp" and not config.allow_idp_initiated:
            raise LoginRefused("unsolicited_response", "this connection accepts only "
                               "sign-ins started here; start again from the application",
                               request_id)
        if kind == "sp":
            login = _opened(ctx, conn, LoginState(value or "", browser), request_id)
            assert login.opened is not None  # noqa: S101 - _opened opens it or raises
            expected = str(login.opened.data["request_id"])
    with failures_audited(ctx, conn.slug, request_id):
        sp = sp_for(ctx, conn, config, base_url)
        assertion = validate_response(saml_response, sp=sp, config=config,
                                      expected_in_response_to=expected, now=ctx.clock())
    return CheckedResponse(conn=conn, config=config, assertion=assertion, login=login,
                           return_to=None if login is not None else value or "/",
                           request_id=request_id)


def finish_saml_login(ctx: ServiceContext, checked: CheckedResponse, *,
                      user_agent: str | None = None,
                      previous_session: str | None = None) -> LoginResult:
    """The ACS's second step: provision and sign in, in one transaction that spends the login
    request and records the assertion's ID (a replay is refused there)."""
    conn, assertion, request_id = checked.conn, checked.assertion, checked.request_id

    def spend_assertion(uow: UnitOfWork) -> Callable[[], None]:
        # In the provisioning transaction, before the decision: the assertion is spent exactly
        # when a login (or its denial) commits, and of two nodes racing with one assertion the
        # primary key lets one through. (not_on_or_after already includes the clock skew.)
        recorded = uow.logins.saml_replay.remember(conn.id, assertion.assertion_id,
                                                   assertion.not_on_or_after)

        def check() -> None:  # once the identity's read has brought the answer
            if not recorded.taken:
                log.info("connection %s: assertion %s presented again", conn.slug,
                         assertion.assertion_id)
                raise LoginRefused("replay", "this sign-in response was already used; start "
                                   "again from the application", request_id)
        return check

    # the session keeps what Single Logout names: SessionIndex, and the NameID as sent
    identity = dataclasses.replace(assertion.identity, idp_session_id=assertion.session_index)
    result = provision_on_login(ctx, conn.slug, identity, login=checked.login,
                                request_id=request_id, user_agent=user_agent,
                                previous_session=previous_session, guard=spend_assertion,
                                id_token_sealed=_sealed_name_id(ctx, checked.config,
                                                                assertion))
    if checked.return_to is None:
        return result
    return dataclasses.replace(result, return_to=checked.return_to)


def _sealed_name_id(ctx: ServiceContext, config: SamlConfig,
                    assertion: ValidatedAssertion) -> str | None:
    """The NameID's Format and qualifiers, sealed, for the session's logout data (the column
    OIDC uses for its ID token): a LogoutRequest must repeat the NameID exactly as the IdP
    wrote it. Only when the IdP has an HTTP-Redirect SingleLogoutService."""
    if not config.idp_slo_url:
        return None
    return ctx.secretbox.seal({
        NAME_ID_FORMAT: assertion.name_id_format,
        NAME_QUALIFIER: assertion.name_qualifier or "",
        SP_NAME_QUALIFIER: assertion.sp_name_qualifier or ""})


def record_refused_post(ctx: ServiceContext, connection_slug: str, error: JitprovError, *,
                        request_id: str | None) -> None:
    """Audit an ACS POST refused before any SAML was read (larger than the connection allows,
    not a form, a connection that is not SAML) as ``login.failed`` with the error's code, like
    every other refusal."""
    record_login_failure(ctx, connection_slug, error.code, str(error), request_id=request_id)


def _opened(ctx: ServiceContext, conn: ConnectionRecord, login: LoginState,
            request_id: str | None) -> LoginState:
    """``login`` with the SAML login request of this connection, started by this browser,
    opened from its binding cookie (it carries the AuthnRequest ID). Writes nothing; raises
    LoginRefused like the check in provision_on_login, where the request is spent."""
    record = open_login_request(ctx, conn, login, request_id, ctx.clock())
    if not record.data.get("request_id"):  # not a SAML login: as good as none
        raise LoginRefused("login_expired", EXPIRED, request_id)
    return dataclasses.replace(login, opened=record)


def fetch_idp_metadata(http: httpx.Client, url: str) -> bytes:
    """GET the IdP metadata document: no redirects followed, 10 s, at most
    MAX_METADATA_BYTES read. Raises SamlError(``invalid_metadata``) with a readable reason."""
    try:
        with http.stream("GET", url, timeout=METADATA_TIMEOUT, follow_redirects=False,
                         headers={"Accept": "application/samlmetadata+xml, "
                                            "application/xml, text/xml"}) as response:
            if response.status_code != 200:
                raise SamlError("invalid_metadata", f"the IdP metadata URL answered HTTP "
                                f"{response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_METADATA_BYTES:
                raise SamlError("invalid_metadata", "the IdP metadata document is larger "
                                f"than {MAX_METADATA_BYTES // (1024 * 1024)} MiB")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_METADATA_BYTES:
                    raise SamlError("invalid_metadata", "the IdP metadata document is "
                                    f"larger than {MAX_METADATA_BYTES // (1024 * 1024)} MiB")
    except httpx.HTTPError as exc:
        raise SamlError("invalid_metadata", f"cannot fetch the IdP metadata: "
                        f"{type(exc).__name__}") from exc
    return bytes(body)


def load_idp_metadata(ctx: ServiceContext, *, metadata_xml: bytes | None,
                      metadata_url: str | None, entity_id: str | None) -> IdpMetadata:
    """Parse the IdP metadata given inline or fetched from ``metadata_url`` (https, or http
    on loopback). Raises SamlError, InvalidInput."""
    if (metadata_xml is None) == (metadata_url is None):
        raise InvalidInput("give exactly one of the IdP metadata URL or file")
    if metadata_url is not None:
        # the config's URL rule, checked before any request: https, or http on loopback only
        if not is_secure_url(metadata_url):
            raise InvalidInput("the IdP metadata URL must be https (http only on loopback)")
        metadata_xml = fetch_idp_metadata(ctx.http, metadata_url)
    assert metadata_xml is not None  # noqa: S101 - one of the two was given
    return parse_idp_metadata(metadata_xml, entity_id=entity_id)
