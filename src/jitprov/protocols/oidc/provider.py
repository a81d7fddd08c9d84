"""Provider metadata (Discovery 1.0) and JWKS, cached per process.

Every node fetches and caches on its own: nothing here is correctness-critical shared state,
only a copy of what the provider publishes. The JWKS is re-fetched when a token names a ``kid``
it does not hold (key rotation), at most once per ``refresh_interval`` per provider, so a flood
of tokens with made-up ``kid`` values cannot make us hammer the provider.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from jitprov.protocols.oidc.errors import OidcError

MAX_DOCUMENT_BYTES = 512 * 1024


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

    @classmethod
    def parse(cls, document: object, expected_issuer: str) -> ProviderMetadata:
        """Raises OidcError for a document that is not usable or names another issuer."""
        if not isinstance(document, dict):
            raise OidcError("discovery_invalid", "the discovery document is not a JSON object")
        issuer = document.get("issuer")
        # Discovery 1.0 section 4.3: the issuer must be exactly the one configured.
        if issuer != expected_issuer:
            raise OidcError("discovery_invalid", f"the discovery document names issuer "
                            f"{issuer!r}, not {expected_issuer!r}")
        fields: dict[str, str] = {}
        for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            value = document.get(name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise OidcError("discovery_invalid", f"the discovery document has no {name}")
            fields[name] = value
        userinfo = document.get("userinfo_endpoint")
        return cls(issuer=issuer, userinfo_endpoint=userinfo if isinstance(userinfo, str)
                   else None,
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


def get_json(http: httpx.Client, url: str, *, what: str,
             headers: dict[str, str] | None = None) -> object:
    """GET a JSON document. Raises OidcError (``idp_unreachable`` / ``idp_bad_response``)."""
    try:
        response = http.get(url, headers={"Accept": "application/json", **(headers or {})})
    except httpx.HTTPError as exc:
        raise OidcError("idp_unreachable", f"cannot fetch the {what}: {type(exc).__name__}"
                        ) from exc
    if response.status_code != 200:
        raise OidcError("idp_bad_response", f"the {what} answered HTTP {response.status_code}")
    if len(response.content) > MAX_DOCUMENT_BYTES:
        raise OidcError("idp_bad_response", f"the {what} is larger than {MAX_DOCUMENT_BYTES} "
                        "bytes")
    try:
        return response.json()
    except ValueError as exc:
        raise OidcError("idp_bad_response", f"the {what} is not JSON") from exc


class Providers:
    """Discovery documents and key sets of the providers this process talks to."""

    def __init__(self, http: httpx.Client, clock: Callable[[], float] = time.monotonic) -> None:
        self.http = http
        self._clock = clock
        self._lock = threading.Lock()
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._keys: dict[str, tuple[float, KeySet]] = {}

    def metadata(self, issuer: str, *, discovery_issuer: str | None = None,
                 ttl: float = 3600) -> ProviderMetadata:
        """The provider's metadata, fetched at most once per ``ttl`` seconds."""
        now = self._clock()
        cached = self._metadata.get(issuer)
        if cached is not None and now - cached[0] < ttl:
            return cached[1]
        base = discovery_issuer or issuer
        document = get_json(self.http, f"{base}/.well-known/openid-configuration",
                            what="discovery document")
        metadata = ProviderMetadata.parse(document, issuer)
        with self._lock:
            self._metadata[issuer] = (now, metadata)
        return metadata

    def keys(self, jwks_uri: str) -> KeySet:
        """The cached key set, fetched on first use."""
        cached = self._keys.get(jwks_uri)
        if cached is not None:
            return cached[1]
        return self._fetch_keys(jwks_uri)

    def refresh_keys(self, jwks_uri: str, *, interval: float) -> KeySet | None:
        """Re-fetch the key set after an unknown ``kid``; None if it was fetched less than
        ``interval`` seconds ago (the rate limit)."""
        cached = self._keys.get(jwks_uri)
        if cached is not None and self._clock() - cached[0] < interval:
            return None
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
            self._keys[jwks_uri] = (self._clock(), keys)
        return keys
