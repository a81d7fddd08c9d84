"""OIDC sign-in: the authorization request that starts it, and the callback (code -> ID token
-> account).

The login request row keeps ``nonce`` and the PKCE ``code_verifier`` server-side (valid across
nodes, single use, expiring). Every failure is audited as ``login.failed`` with its reason and
shown as a readable page; no account or session is written for it.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
from collections.abc import Callable, Generator, Mapping
from functools import partial
from typing import Literal

import anyio
import httpx
from joserfc.jwk import ECKey

from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.core.identity import ExternalIdentity
from jitprov.protocols.oidc import (
    KeysNotInMemory,
    OidcConfig,
    OidcError,
    OidcKind,
    ProviderMetadata,
    build_authorization_request,
    check_response_issuer,
    check_scopes,
    identity_from_claims,
    read_token_response,
    read_userinfo,
    send,
    send_async,
    token_request,
    userinfo_request,
    validate_id_token,
)
from jitprov.services.common import hash_token
from jitprov.services.context import ServiceContext
from jitprov.services.login.failures import audited_failure
from jitprov.services.login.flow import LoginResult, provision_on_login
from jitprov.services.login.state import LoginState, login_in_memory, opened_login_request
from jitprov.store.records import ConnectionRecord

_KEYS_LOCK = threading.Lock()
_PRIVATE_KEYS: dict[str, ECKey] = {}


def redirect_uri(base_url: str, connection: str) -> str:
    return f"{base_url}/sso/{connection}/oidc/callback"


def post_logout_redirect_uri(base_url: str, connection: str) -> str:
    """Where the provider sends the browser after its logout: a jitprov signed-out page (to
    register at the provider)."""
    return f"{base_url}/sso/{connection}/oidc/signed-out"


def backchannel_logout_uri(base_url: str, connection: str) -> str:
    """Where the provider POSTs logout tokens (to register at the provider)."""
    return f"{base_url}/sso/{connection}/backchannel-logout"


def connection_config(conn: ConnectionRecord) -> OidcConfig:
    if conn.kind != "oidc":
        raise InvalidInput(f"connection {conn.slug} is not an OIDC connection")
    return OidcConfig.parse(conn.config)


def provider_metadata(ctx: ServiceContext, config: OidcConfig) -> ProviderMetadata:
    return ctx.oidc.metadata(config.issuer, discovery_issuer=config.discovery_issuer(),
                             ttl=config.discovery_ttl_seconds)


def scope_warnings(ctx: ServiceContext, connection: str, *,
                   discovery: Literal["fetch", "cached", "none"] = "fetch") -> list[str]:
    """The claims the connection's mapping reads that its requested scopes are unlikely to
    bring, each named with the rules that read it and what to do (``protocols/oidc/
    scopes.py``). The discovery document says which scopes and claims the provider offers:
    ``fetch`` asks the provider (through the cache), ``cached`` uses only what this process
    already read, ``none`` none; without it (or unreachable) only the standard scopes are
    checked. Raises NotFound, InvalidInput (not an OIDC connection)."""
    conn = ctx.connections.get(connection)
    config = connection_config(conn)
    metadata: ProviderMetadata | None = None
    if discovery == "fetch":
        try:
            metadata = provider_metadata(ctx, config)
        except OidcError:
            metadata = None
    elif discovery == "cached":
        metadata = ctx.oidc.cached_metadata(config.issuer, ttl=config.discovery_ttl_seconds)
    readers = ctx.policies.get(conn).claim_readers()
    return [str(warning) for warning in check_scopes(readers, config.scopes, metadata)]


#: seconds of freshness a cached discovery document must have left for a login to be tried
#: on the event loop (:meth:`OidcConnection.starts_offline`)
OFFLINE_MARGIN = 5.0


class OidcConnection(OidcKind):
    """Kind ``oidc``: the protocol's configuration check, and the authorization request
    (with its nonce and PKCE verifier) that starts a login."""

    def starts_offline(self, ctx: ServiceContext, conn: ConnectionRecord) -> bool:
        """When this process holds the provider's discovery document, with a margin of
        :data:`OFFLINE_MARGIN` seconds before it is due again (the start a moment later, in
        offline mode, then almost never finds it gone and tries again in a thread)."""
        config = connection_config(conn)
        return ctx.oidc.cached_metadata(
            config.issuer, ttl=config.discovery_ttl_seconds - OFFLINE_MARGIN) is not None

    #: the provider answers with a top-level GET redirect, which SameSite=Lax cookies reach
    answers_cross_site_post = False

    def login_request(self, ctx: ServiceContext, conn: ConnectionRecord, state: str, *,
                      base_url: str, login_hint: str | None = None, offline: bool = False
                      ) -> tuple[dict[str, object], str]:
        """(what the login request keeps: nonce and PKCE verifier; the IdP authorization
        URL, with ``login_hint`` when given). Raises OidcError when the provider cannot be
        reached or read, or (``offline``) when its discovery document is not in memory."""
        config = connection_config(conn)
        if offline:
            metadata = ctx.oidc.cached_metadata(config.issuer, ttl=config.discovery_ttl_seconds)
            if metadata is None:
                raise OidcError("idp_unreachable", "the provider's discovery document is not "
                                "in memory")
        else:
            metadata = provider_metadata(ctx, config)
        request = build_authorization_request(
            metadata, config, state=state, redirect_uri=redirect_uri(base_url, conn.slug),
            login_hint=login_hint)
        return {"nonce": request.nonce, "code_verifier": request.code_verifier}, request.url


@dataclasses.dataclass(frozen=True, slots=True)
class CheckedCallback:
    """An OIDC callback whose code is redeemed and whose ID token is verified (nothing of the
    login spent or recorded yet)."""

    conn: ConnectionRecord
    #: the login it answers, opened from the browser's binding cookie
    login: LoginState
    identity: ExternalIdentity
    #: the ID token, sealed, for RP-initiated logout's id_token_hint (None if not needed)
    id_token_sealed: str | None
    request_id: str | None

    def __repr__(self) -> str:  # the identity's claims never reach a log
        return f"CheckedCallback(connection={self.conn.slug!r}, <identity hidden>)"


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    """A request to the provider that the callback's steps wait on; ``what`` names it in
    error texts."""

    request: httpx.Request
    what: str

    def __repr__(self) -> str:  # the request carries the code, secrets, tokens
        return f"Call({self.what})"


#: the callback's steps (:func:`callback_steps`): they yield a Call to be answered with
#: (status, body), or None before a step that may block
CallbackSteps = Generator[Call | None, tuple[int, bytes] | None, CheckedCallback]


def check_oidc_callback(ctx: ServiceContext, connection_slug: str, params: Mapping[str, str],
                        *, browser: str | None, base_url: str,
                        request_id: str | None) -> CheckedCallback:
    """The callback's first step: the login this browser started, the code redeemed at the
    token endpoint, the ID token verified (and userinfo fetched, if configured). Calls the
    IdP; writes only a refusal's ``login.failed``."""
    steps = callback_steps(ctx, ctx.http, connection_slug, params, browser=browser,
                           base_url=base_url, request_id=request_id)
    return drive_steps(steps, partial(_send, ctx.http))


async def check_oidc_callback_async(ctx: ServiceContext, connection_slug: str,
                                    params: Mapping[str, str], *, browser: str | None,
                                    base_url: str, request_id: str | None) -> CheckedCallback:
    """:func:`check_oidc_callback` for an event loop: the provider's answers awaited there,
    with every step between them while it needs only memory (a warm process: the connection,
    the discovery document and the keys in memory, the login's cookie good). From the first
    step that may block (a first callback after a restart, a key rotation, a refusal to
    audit) the rest runs in a worker thread as :func:`check_oidc_callback` does; all of it
    does when the server's client cannot send for an event loop."""
    http = ctx.http_async
    if http is None:
        return await anyio.to_thread.run_sync(partial(
            check_oidc_callback, ctx, connection_slug, params, browser=browser,
            base_url=base_url, request_id=request_id))
    steps = callback_steps(ctx, http, connection_slug, params, browser=browser,
                           base_url=base_url, request_id=request_id)
    wanted = _advance(steps, None, None)
    while not isinstance(wanted, CheckedCallback):
        if wanted is None:  # the next step may block
            return await anyio.to_thread.run_sync(drive_steps, steps, partial(_send, ctx.http))
        try:
            answer = await send_async(http, wanted.request, what=wanted.what)
        except OidcError as exc:  # unreachable, too large: the steps audit it
            wanted = _advance(steps, None, exc)
        else:
            wanted = _advance(steps, answer, None)
    return wanted


def drive_steps(steps: CallbackSteps, sender: Callable[[Call], tuple[int, bytes]]
                ) -> CheckedCallback:
    """Run ``steps`` to their end in this thread, each Call sent by ``sender`` (its OidcError
    thrown back into the steps, which audit it)."""
    wanted = _advance(steps, None, None)
    while not isinstance(wanted, CheckedCallback):
        if wanted is None:
            wanted = _advance(steps, None, None)
            continue
        try:
            answer = sender(wanted)
        except OidcError as exc:
            wanted = _advance(steps, None, exc)
        else:
            wanted = _advance(steps, answer, None)
    return wanted


def _advance(steps: CallbackSteps, answer: tuple[int, bytes] | None,
             error: OidcError | None) -> Call | CheckedCallback | None:
    """``steps`` given ``answer`` (or ``error`` thrown in): the next Call, None before a step
    that may block, or at their end the CheckedCallback. Their refusals raise through."""
    try:
        return steps.throw(error) if error is not None else steps.send(answer)
    except StopIteration as done:
        checked: CheckedCallback = done.value
        return checked


def _send(http: httpx.Client, call: Call) -> tuple[int, bytes]:
    return send(http, call.request, what=call.what)


def callback_steps(ctx: ServiceContext, http: httpx.Client | httpx.AsyncClient,
                   connection_slug: str, params: Mapping[str, str], *, browser: str | None,
                   base_url: str, request_id: str | None) -> CallbackSteps:
    """The callback's check, as steps: each request to the provider (built for ``http``) is
    yielded as a Call, for the driver to send and answer with (status, body); None is
    yielded before a step that may block (a database read or write, a document fetched from
    the provider), so that an event loop can hand the rest to a thread. Every refusal after
    the login is opened is audited as ``login.failed`` (:func:`audited_failure`)."""
    conn = ctx.connections.peek(connection_slug)
    login = LoginState(params.get("state", ""), browser)
    opened = None if conn is None else login_in_memory(ctx, conn, login, ctx.clock())
    if conn is None or opened is None:
        yield None  # the connection read, or a refusal read and audited
        opened = opened_login_request(ctx, connection_slug, login, request_id=request_id)
        conn = ctx.connections.get(connection_slug)
    record = opened.opened
    assert record is not None  # noqa: S101 - opened from the cookie or raised
    try:
        config = connection_config(conn)
        metadata = ctx.oidc.cached_metadata(config.issuer, ttl=config.discovery_ttl_seconds)
        if metadata is None:
            yield None  # the discovery document fetched
            metadata = provider_metadata(ctx, config)
        check_response_issuer(metadata, params.get("iss"))
        if "error" in params:
            error = params["error"][:100]
            described = params.get("error_description", "")[:200]
            raise OidcError("idp_error", f"the identity provider refused the sign-in: {error}"
                            + (f" ({described})" if described else ""))
        code = params.get("code")
        if not code:
            raise OidcError("invalid_response", "the identity provider sent no code")
        sealed = ctx.secretbox.open(conn.secrets)
        answer = yield Call(token_request(
            http, metadata, config, code=code,
            code_verifier=str(record.data.get("code_verifier", "")),
            redirect_uri=redirect_uri(base_url, conn.slug),
            client_secret=sealed.get("client_secret"),
            private_key=_private_key(sealed)), "token endpoint")
        assert answer is not None  # noqa: S101 - a driver answers every Call
        tokens = read_token_response(*answer)
        nonce, now = str(record.data.get("nonce", "")), ctx.clock().timestamp()
        try:
            claims = validate_id_token(tokens.id_token, ctx.oidc, metadata, config,
                                       nonce=nonce, now=now, fetch=False)
        except KeysNotInMemory:
            yield None  # the provider's keys fetched
            claims = validate_id_token(tokens.id_token, ctx.oidc, metadata, config,
                                       nonce=nonce, now=now)
        userinfo = None
        if config.userinfo:
            answer = yield Call(userinfo_request(http, metadata, tokens.access_token),
                                "userinfo")
            assert answer is not None  # noqa: S101 - a driver answers every Call
            userinfo = read_userinfo(*answer, subject=str(claims["sub"]))
        identity = identity_from_claims(claims, userinfo)
        # kept for RP-initiated logout's id_token_hint, sealed (see oidc_logout.py)
        sealed_token = (ctx.secretbox.seal({"id_token": tokens.id_token})
                        if config.idp_logout and metadata.end_session_endpoint else None)
    except (JitprovError, ValueError, TypeError) as exc:
        yield None  # the refusal audited
        raise audited_failure(ctx, conn.slug, request_id, exc)  # noqa: B904 - its cause set
    return CheckedCallback(conn=conn, login=opened, identity=identity,
                           id_token_sealed=sealed_token, request_id=request_id)


def finish_oidc_login(ctx: ServiceContext, checked: CheckedCallback, *,
                      user_agent: str | None = None,
                      previous_session: str | None = None) -> LoginResult:
    """The callback's second step: provision and sign in, in one transaction that spends the
    login request. No network call."""
    return provision_on_login(ctx, checked.conn.slug, checked.identity, login=checked.login,
                              request_id=checked.request_id, user_agent=user_agent,
                              previous_session=previous_session,
                              id_token_sealed=checked.id_token_sealed)


def _private_key(sealed: Mapping[str, str]) -> ECKey | None:
    """The connection's private_key_jwt key, parsed once per process."""
    text = sealed.get("private_jwk")
    if not text:
        return None
    digest = hash_token(text)  # keyed by content: ids and versions repeat across databases
    cached = _PRIVATE_KEYS.get(digest)
    if cached is None:
        cached = ECKey.import_key(json.loads(text))
        with _KEYS_LOCK:
            _PRIVATE_KEYS[digest] = cached
    return cached


def new_client_key(connection: str) -> tuple[str, dict[str, str]]:
    """A P-256 key for private_key_jwt: (private JWK as JSON, for the sealed secrets;
    public JWK, to publish at the connection's JWKS URL)."""
    key = ECKey.generate_key("P-256", parameters={"kid": f"{connection}-{secrets.token_hex(4)}",
                                                  "use": "sig", "alg": "ES256"}, private=True)
    public = {k: str(v) for k, v in key.as_dict(private=False).items()}
    return json.dumps(key.as_dict(private=True)), public
