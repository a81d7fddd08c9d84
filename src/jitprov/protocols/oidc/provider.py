"""Provider metadata (Discovery 1.0) and JWKS, cached per process.

Every node fetches and caches on its own: nothing here is correctness-critical shared state,
only a copy of what the provider publishes. The JWKS is re-fetched when a token names a ``kid``
it does not hold (key rotation), at most once per ``refresh_interval`` per provider, so a flood
of tokens with made-up ``kid`` values cannot make us hammer the provider.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from jitprov.protocols.oidc.errors import OidcError
from jitprov.protocols.urls import is_secure_url

MAX_DOCUMENT_BYTES = 512 * 1024
JWKS_TTL = 24 * 3600.0  # seconds


class KeysNotInMemory(Exception):
    """A token's verification would fetch the provider's key set (not in memory, or no key of
    the token's ``kid`` in it): raised instead where no network call may be made."""


@dataclass(frozen=True, slots=True)
class ProviderMetadata:
    """The fields of a discovery document that a relying party uses."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str | None
    token_endpoint_auth_methods: tuple[str, ...]
    code_challenge_methods: tuple[str, ...]
    #: RFC 9207: the provider puts ``iss`` in its authorization responses
    iss_parameter: bool = False
    #: RP-Initiated Logout 1.0: where to send the browser to sign out at the provider
    end_session_endpoint: str | None = None
    #: Back-Channel Logout 1.0 section 2.1: the provider sends logout tokens (with ``sid``)
    backchannel_logout: bool = False
    backchannel_logout_session: bool = False
    #: what the provider says it offers; empty when it does not say
    scopes_supported: tuple[str, ...] = ()
    claims_supported: tuple[str, ...] = ()

    @classmethod
    def parse(cls, document: object, expected_issuer: str) -> ProviderMetadata:
        """Raises OidcError for a document that is not usable or names another issuer."""
        if not isinstance(document, dict):
            raise OidcError("discovery_invalid", "the discovery document is not a JSON object")
        issuer = document.get("issuer")
        # Discovery 1.0 section 4.3: the issuer must be exactly the one configured.
        if issuer != expected_issuer:
            shown = str(issuer)[:200]
            raise OidcError("discovery_invalid", f"the discovery document names issuer "
                            f"{shown!r}, not {expected_issuer!r}")
        fields: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            # secrets and codes go to these: https only (http only on loopback)
            if not isinstance(value, str) or not is_secure_url(value):
                raise OidcError("discovery_invalid", f"the discovery document has no usable "
                                f"{name} (https required)")
            fields[name] = value
        userinfo = document.get("userinfo_endpoint")
        if isinstance(userinfo, str) and not is_secure_url(userinfo):
            userinfo = None
        end_session = document.get("end_session_endpoint")
        return cls(issuer=issuer, userinfo_endpoint=userinfo if isinstance(userinfo, str)
                   else None,
                   end_session_endpoint=end_session if isinstance(end_session, str)
                   and is_secure_url(end_session) else None,
                   backchannel_logout=document.get("backchannel_logout_supported") is True,
                   backchannel_logout_session=document.get(
                       "backchannel_logout_session_supported") is True,
                   scopes_supported=_strings(document.get("scopes_supported"), default=()),
                   claims_supported=_strings(document.get("claims_supported"), default=()),
                   iss_parameter=document.get(
                       "authorization_response_iss_parameter_supported") is True,
                   token_endpoint_auth_methods=_strings(
                       document.get("token_endpoint_auth_methods_supported"),
                       default=("client_secret_basic",)),
                   code_challenge_methods=_strings(
                       document.get("code_challenge_methods_supported"), default=()),
                   **fields)


def _strings(value: object, *, default: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    return default


def send(http: httpx.Client, request: httpx.Request, *, what: str) -> tuple[int, bytes]:
    """Send a request; read at most MAX_DOCUMENT_BYTES of the answer. Raises OidcError."""
    try:
        response = http.send(request, stream=True)
        try:
            body = _Capped(response, what)
            for chunk in response.iter_bytes():
                body.add(chunk)
            return response.status_code, bytes(body.read)
        finally:
            response.close()
    except OidcError:
        raise
    except Exception as exc:  # httpx's errors, and what the I/O under it lets through
        raise _unreachable(what, exc) from exc


async def send_async(http: httpx.AsyncClient, request: httpx.Request, *,
                     what: str) -> tuple[int, bytes]:
    """:func:`send` for an event loop."""
    try:
        response = await http.send(request, stream=True)
        try:
            body = _Capped(response, what)
            async for chunk in response.aiter_bytes():
                body.add(chunk)
            return response.status_code, bytes(body.read)
        finally:
            await response.aclose()
    except OidcError:
        raise
    except Exception as exc:  # httpx's errors, and what the I/O under it lets through (anyio
        raise _unreachable(what, exc) from exc  # wraps a connect's OverflowError in a group)


class _Capped:
    """An answer's body as it arrives, refused past MAX_DOCUMENT_BYTES (declared or read)."""

    def __init__(self, response: httpx.Response, what: str) -> None:
        self.what = what
        self.read = bytearray()
        declared = response.headers.get("content-length") or ""
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
            raise OidcError("idp_bad_response", f"the {what} is too large")

    def add(self, chunk: bytes) -> None:
        self.read += chunk
        if len(self.read) > MAX_DOCUMENT_BYTES:
            raise OidcError("idp_bad_response", f"the {self.what} is too large")


def _unreachable(what: str, exc: Exception) -> OidcError:
    return OidcError("idp_unreachable", f"cannot reach the {what}: {type(exc).__name__}")


def parse_json(body: bytes, *, what: str) -> object:
    """Decode a JSON answer. Raises OidcError for anything else, however nested."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise OidcError("idp_bad_response", f"the {what} is not usable JSON") from exc


def json_request(http: httpx.Client | httpx.AsyncClient, url: str, *, what: str,
                 headers: dict[str, str] | None = None) -> httpx.Request:
    """A GET of a JSON document. Raises OidcError for a URL that is not one."""
    try:
        return http.build_request("GET", url, headers={"Accept": "application/json",
                                                       **(headers or {})})
    except (httpx.InvalidURL, ValueError) as exc:
        raise OidcError("idp_bad_response", f"the {what} URL is not valid") from exc


def read_json(status: int, body: bytes, *, what: str) -> object:
    """The document of a :func:`json_request`'s answer. Raises OidcError."""
    if status != 200:
        raise OidcError("idp_bad_response", f"the {what} answered HTTP {status}")
    return parse_json(body, what=what)


def get_json(http: httpx.Client, url: str, *, what: str,
             headers: dict[str, str] | None = None) -> object:
    """GET a JSON document. Raises OidcError (``idp_unreachable`` / ``idp_bad_response``)."""
    request = json_request(http, url, what=what, headers=headers)
    return read_json(*send(http, request, what=what), what=what)


class Providers:
    """Discovery documents and key sets of the providers this process talks to."""

    def __init__(self, http: httpx.Client, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._keys: dict[str, tuple[float, KeySet]] = {}
        self._attempts: dict[str, float] = {}  # last JWKS fetch attempt, failed ones included

    def metadata(self, issuer: str, *, discovery_issuer: str | None = None,
                 ttl: float = 3600) -> ProviderMetadata:
        """The provider's metadata, fetched at most once per ``ttl`` seconds."""
        now = self._clock()
        cached = self._metadata.get(issuer)
        if cached is not None and now - cached[0] < ttl:
            return cached[1]
        base = (discovery_issuer or issuer).rstrip("/")
        document = get_json(self.http, f"{base}/.well-known/openid-configuration",
                            what="discovery document")
        metadata = ProviderMetadata.parse(document, issuer)
        with self._lock:  # a slower fetch that began earlier does not replace a newer one
            kept = self._metadata.get(issuer)
            if kept is None or kept[0] <= now:
                self._metadata[issuer] = (now, metadata)
        return metadata

    def cached_metadata(self, issuer: str, *, ttl: float = 3600) -> ProviderMetadata | None:
        """The metadata if fetched less than ``ttl`` seconds ago; never asks the provider."""
        cached = self._metadata.get(issuer)
        if cached is not None and self._clock() - cached[0] < ttl:
            return cached[1]
        return None

    def keys(self, jwks_uri: str, *, ttl: float = JWKS_TTL) -> KeySet:
        """The cached key set, fetched on first use and again after ``ttl`` seconds, so a key
        the provider withdrew stops verifying within a day even without a new ``kid``."""
        cached = self._keys.get(jwks_uri)
        if cached is not None and self._clock() - cached[0] < ttl:
            return cached[1]
        return self._fetch_keys(jwks_uri)

    def keys_in_memory(self, jwks_uri: str, *, ttl: float = JWKS_TTL) -> KeySet:
        """The key set if fetched less than ``ttl`` seconds ago; never asks the provider.
        Raises KeysNotInMemory."""
        cached = self._keys.get(jwks_uri)
        if cached is None or self._clock() - cached[0] >= ttl:
            raise KeysNotInMemory(jwks_uri)
        return cached[1]

    def refresh_keys(self, jwks_uri: str, *, interval: float) -> KeySet | None:
        """Re-fetch the key set after an unknown ``kid``; None if it was fetched less than
        ``interval`` seconds ago (the rate limit)."""
        now = self._clock()
        last = self._attempts.get(jwks_uri)
        if last is not None and now - last < interval:
            return None
        with self._lock:
            self._attempts[jwks_uri] = now  # a failed fetch counts too: no retry storm
        return self._fetch_keys(jwks_uri)

    def _fetch_keys(self, jwks_uri: str) -> KeySet:
        document = get_json(self.http, jwks_uri, what="JWKS")
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise OidcError("idp_bad_response", "the JWKS has no keys")
        usable = [k for k in document["keys"] if isinstance(k, dict)
                  and k.get("kty") in ("RSA", "EC", "OKP") and k.get("use", "sig") == "sig"]
        try:
            keys = KeySet.import_key_set({"keys": usable})
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcError("idp_bad_response", f"the JWKS cannot be read: {exc}") from exc
        with self._lock:
            now = self._clock()
            self._keys[jwks_uri] = (now, keys)
            self._attempts[jwks_uri] = now
        return keys
