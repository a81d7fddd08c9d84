"""Signed identity for applications: short-lived ES256 JWTs describing the account and its
roles, verifiable with the JWKS at ``/.well-known/jwks.json``.

Keys live in the database (private halves sealed with the SecretBox), so every node signs with
the same active key and publishes the same set. The next key is published one rotation ahead
of its use (an app that cached the JWKS already holds it when tokens signed by it appear), and
the previous one stays published for ``overlap`` so tokens it signed keep verifying.
ES256 signing costs ~50 µs (RSA would cost ~1 ms per token).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import orjson
from joserfc import jwt
from joserfc.jwk import ECKey

from jitprov.core.json_text import non_finite
from jitprov.services.context import ServiceContext
from jitprov.store.unit_of_work import UnitOfWork

TOKEN_LIFETIME = timedelta(minutes=5)
AUDIENCE = "jitprov-apps"
KEY_CACHE_SECONDS = 2.0  # a rotation reaches every node within this

_lock = threading.Lock()
CACHE = "identity_tokens.active_key"  # in ctx.caches: (read at, kid, key)
ISSUED = "identity_tokens.issued"  # in ctx.caches: identity -> (token, exp), newest last
#: a token is handed out again this long after it was signed (of its 5 minutes)
REUSE_FOR = 60
MAX_REUSED = 10_000  # identities remembered per process (the oldest are forgotten)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int

    def __repr__(self) -> str:
        return "IssuedToken(<hidden>)"


def rotate_keys(ctx: ServiceContext, *, overlap: timedelta = timedelta(hours=24)) -> str:
    """Rotate: the staged key (published since the last rotation, so apps already hold it)
    becomes the active one, the previous active key stays published for ``overlap``, and a new
    key is staged. The very first call makes the first active key too. Returns the id of the
    key that now signs."""
    now = ctx.clock()
    with UnitOfWork(ctx.db) as uow:
        kid = uow.config.signing_keys.staged()
        if kid is None:  # the first rotation ever: nothing staged yet
            kid = _add_key(ctx, uow, active=False)
        uow.config.signing_keys.promote(kid, retire_previous_after=now + overlap)
        _add_key(ctx, uow, active=False)  # the next one, published ahead of its use
        uow.commit()
    with _lock:
        ctx.caches.pop(CACHE, None)
    return kid


def _add_key(ctx: ServiceContext, uow: UnitOfWork, *, active: bool) -> str:
    now = ctx.clock()
    kid = f"{now:%Y%m%d}-{secrets.token_hex(4)}"
    key = ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"},
                             private=True)
    uow.config.signing_keys.add(kid=kid, sealed_private=ctx.secretbox.seal(
        {"jwk": json.dumps(key.as_dict(private=True))}),
        public_jwk=key.as_dict(private=False), now=now, active=active)
    return kid


def published_keys(ctx: ServiceContext) -> dict[str, object]:
    """The JWKS: the active key and the keys still inside their overlap."""
    with UnitOfWork(ctx.db, readonly=True) as uow:
        return {"keys": uow.config.signing_keys.published(ctx.clock())}


def _active_key(ctx: ServiceContext) -> tuple[str, ECKey]:
    cached = ctx.caches.get(CACHE)
    if isinstance(cached, tuple) and time.monotonic() - cached[0] < KEY_CACHE_SECONDS:
        return cached[1], cached[2]
    with UnitOfWork(ctx.db, readonly=True) as uow:
        found = uow.config.signing_keys.active()
    if found is None:
        rotate_keys(ctx)  # the first token ever: make the first key
        with UnitOfWork(ctx.db, readonly=True) as uow:
            found = uow.config.signing_keys.active()
        assert found is not None  # noqa: S101
    kid, sealed = found
    key = ECKey.import_key(json.loads(ctx.secretbox.open(sealed)["jwk"]))
    with _lock:
        ctx.caches[CACHE] = (time.monotonic(), kid, key)
    return kid, key


def _identity(me: Mapping[str, object], issuer: str) -> dict[str, object]:
    return {"iss": issuer, "aud": AUDIENCE, "sub": me["id"], "tenant": me["tenant"],
            "email": me["email"], "name": me["name"], "roles": me["roles"],
            "groups": me["groups"]}


#: the reuse key's JSON: keys sorted, dates and dataclasses as their ``str`` (``default``)
_KEY_JSON = (orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
             | orjson.OPT_PASSTHROUGH_DATACLASS)


def _reuse_key(kid: str, identity: Mapping[str, object]) -> str:
    """The key id and the identity's JSON, keys sorted: equal when the token would say the
    same (its values are text, None and lists of text: ``as_me``'s). Written by orjson
    (forward-auth makes one per request; ``json.dumps`` with sorted keys was 4 % of the
    request), else by ``json.dumps`` behind a mark orjson's text never starts with: where
    orjson refuses a value, and where it would write a NaN or an infinity as ``null``, the
    text of None."""
    try:
        raw = orjson.dumps(identity, option=_KEY_JSON, default=str)
    except orjson.JSONEncodeError:
        raw = None
    if raw is None or (b"null" in raw and non_finite(identity)):
        return kid + "\0\0" + json.dumps(identity, sort_keys=True, default=str)
    return kid + "\0" + raw.decode()


def _reused(ctx: ServiceContext, reuse_key: str, now: int) -> IssuedToken | None:
    """The token signed for ``reuse_key`` less than :data:`REUSE_FOR` ago, if any."""
    issued = ctx.caches.get(ISSUED)
    if not isinstance(issued, OrderedDict):
        return None
    with _lock:
        found = issued.get(reuse_key)
    lifetime = int(TOKEN_LIFETIME.total_seconds())
    if found is not None and found[1] - lifetime <= now < found[1] - lifetime + REUSE_FOR:
        return IssuedToken(found[0], found[1] - now)
    return None


def reissued_token(ctx: ServiceContext, me: Mapping[str, object], *,
                   issuer: str) -> IssuedToken | None:
    """The token :func:`issue_token` would hand out again, from memory alone, or None when it
    would read the database (the key is not fresh in memory) or sign. No I/O and no wait
    beyond a short lock: the event loop may call it and skip a worker thread."""
    cached = ctx.caches.get(CACHE)
    if not (isinstance(cached, tuple) and time.monotonic() - cached[0] < KEY_CACHE_SECONDS):
        return None
    return _reused(ctx, _reuse_key(cached[1], _identity(me, issuer)),
                   int(ctx.clock().timestamp()))


def issue_token(ctx: ServiceContext, me: Mapping[str, object], *, issuer: str) -> IssuedToken:
    """An ES256 JWT for applications: who is signed in (``SignedIn.as_me()``), with their
    current roles.

    A token signed for the same identity, roles and key less than :data:`REUSE_FOR` ago is
    handed out again instead of signing a new one (forward-auth asks for one on every request
    an app gets; an ES256 signature is most of that request's CPU): it says exactly what a new
    one would, and expires when it did. A change of roles, profile or signing key makes a new
    one at once.
    """
    kid, key = _active_key(ctx)
    now = int(ctx.clock().timestamp())
    lifetime = int(TOKEN_LIFETIME.total_seconds())
    identity = _identity(me, issuer)
    reuse_key = _reuse_key(kid, identity)
    found = _reused(ctx, reuse_key, now)
    if found is not None:
        return found
    claims = {**identity, "iat": now, "exp": now + lifetime, "jti": uuid.uuid4().hex}
    token = jwt.encode({"alg": "ES256", "kid": kid, "typ": "JWT"}, claims, key,
                       algorithms=["ES256"])
    with _lock:
        issued = ctx.caches.setdefault(ISSUED, OrderedDict())
        assert isinstance(issued, OrderedDict)  # noqa: S101
        issued[reuse_key] = (token, now + lifetime)
        issued.move_to_end(reuse_key)
        while len(issued) > MAX_REUSED:
            issued.popitem(last=False)
    return IssuedToken(token, lifetime)
