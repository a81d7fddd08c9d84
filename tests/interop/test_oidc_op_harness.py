"""Self-test of the interop OP harness, with a tiny relying party written here (httpx + joserfc)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.interop import oidc_op
from tests.interop.oidc_op import OpenIdProvider, complete_login

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("oidc_op_available")]

CLIENT_ID = "jitprov-rp"
CLIENT_SECRET = "rp-secret-for-interop-tests-only"
# Port 9 (discard) on loopback: nothing is served there, and complete_login must not go there.
REDIRECT_URI = "http://127.0.0.1:9/sso/oidc/callback"
SCOPE = "openid email profile groups"

ALICE = {
    "email": "alice@example.test",
    "email_verified": True,
    "name": "Alice Liddell",
    "given_name": "Alice",
    "family_name": "Liddell",
    "department": "Engineering",
    "groups": ["staff", "engineering"],
}


@pytest.fixture
def op() -> Iterator[OpenIdProvider]:
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [REDIRECT_URI],
        "token_endpoint_auth_method": "client_secret_basic",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
    }
    with OpenIdProvider(clients=[client], accounts={"alice": ALICE}) as provider:
        yield provider


class TinyRP:
    """Just enough of an OIDC relying party: code flow, PKCE S256, ID token verification."""

    def __init__(self, issuer: str) -> None:
        self.http = httpx.Client(timeout=10, trust_env=False)
        self.meta = self.http.get(f"{issuer}/.well-known/openid-configuration").json()
        assert self.meta["issuer"] == issuer
        self.keys = KeySet.import_key_set(self.http.get(self.meta["jwks_uri"]).json())

    def close(self) -> None:
        self.http.close()

    def authorization_url(self) -> tuple[str, dict[str, str]]:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        tx = {"state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
              "verifier": verifier}
        query = urlencode({
            "response_type": "code", "client_id": CLIENT_ID, "redirect_uri": REDIRECT_URI,
            "scope": SCOPE, "state": tx["state"], "nonce": tx["nonce"],
            "code_challenge": challenge, "code_challenge_method": "S256",
        })
        return f"{self.meta['authorization_endpoint']}?{query}", tx

    def token_request(self, code: str, verifier: str, secret: str = CLIENT_SECRET
                      ) -> httpx.Response:
        return self.http.post(
            self.meta["token_endpoint"],
            data={"grant_type": "authorization_code", "code": code,
                  "redirect_uri": REDIRECT_URI, "code_verifier": verifier},
            auth=(CLIENT_ID, secret),  # client_secret_basic
        )

    def login(self, username: str) -> dict[str, Any]:
        url, tx = self.authorization_url()
        callback = complete_login(url, username)
        assert callback.startswith(REDIRECT_URI + "?")
        params = {k: v[0] for k, v in parse_qs(urlsplit(callback).query).items()}
        assert params.get("state") == tx["state"], params
        assert params.get("iss") == self.meta["issuer"]  # RFC 9207
        response = self.token_request(params["code"], tx["verifier"])
        assert response.status_code == 200, response.text
        tokens = response.json()
        token = jwt.decode(tokens["id_token"], self.keys, algorithms=["RS256"])
        assert token.header["alg"] == "RS256"
        jwt.JWTClaimsRegistry(
            iss={"essential": True, "value": self.meta["issuer"]},
            aud={"essential": True, "value": CLIENT_ID},
            nonce={"essential": True, "value": tx["nonce"]},
            exp={"essential": True},
        ).validate(token.claims)
        userinfo = self.http.get(self.meta["userinfo_endpoint"],
                                 headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert userinfo.status_code == 200, userinfo.text
        return {"id_token": token.claims, "userinfo": userinfo.json()}


@pytest.fixture
def rp(op: OpenIdProvider) -> Iterator[TinyRP]:
    relying_party = TinyRP(op.issuer)
    yield relying_party
    relying_party.close()


def test_discovery_advertises_what_the_interop_tests_rely_on(op: OpenIdProvider,
                                                             rp: TinyRP) -> None:
    assert op.issuer.startswith("http://127.0.0.1:")
    assert rp.meta["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "email", "profile", "groups"} <= set(rp.meta["scopes_supported"])
    assert {"groups", "department", "email"} <= set(rp.meta["claims_supported"])
    assert {"client_secret_basic", "client_secret_post", "private_key_jwt"} <= set(
        rp.meta["token_endpoint_auth_methods_supported"])
    assert {key.alg for key in rp.keys.keys} >= {"RS256", "ES256"}


def test_code_flow_carries_claims_and_follows_account_changes(op: OpenIdProvider,
                                                              rp: TinyRP) -> None:
    first = rp.login("alice")
    claims = first["id_token"]
    assert claims["sub"] == "alice"
    assert claims["email"] == "alice@example.test"
    assert claims["email_verified"] is True
    assert claims["name"] == "Alice Liddell"
    assert claims["department"] == "Engineering"
    assert claims["groups"] == ["staff", "engineering"]
    assert first["userinfo"]["sub"] == "alice"
    assert first["userinfo"]["groups"] == ["staff", "engineering"]

    op.set_account("alice", {**ALICE, "groups": ["staff", "admins"], "department": "Ops"})

    second = rp.login("alice")
    assert second["id_token"]["sub"] == "alice"
    assert second["id_token"]["groups"] == ["staff", "admins"]
    assert second["id_token"]["department"] == "Ops"
    assert second["userinfo"]["groups"] == ["staff", "admins"]


def test_wrong_client_secret_is_invalid_client(op: OpenIdProvider, rp: TinyRP) -> None:
    url, tx = rp.authorization_url()
    code = parse_qs(urlsplit(complete_login(url, "alice")).query)["code"][0]
    response = rp.token_request(code, tx["verifier"], secret="not-the-secret")
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_unknown_user_ends_in_access_denied_at_the_client(op: OpenIdProvider,
                                                          rp: TinyRP) -> None:
    url, tx = rp.authorization_url()
    params = parse_qs(urlsplit(complete_login(url, "mallory")).query)
    assert params["error"] == ["access_denied"]
    assert params["state"] == [tx["state"]]


def test_pkce_is_required(op: OpenIdProvider, rp: TinyRP) -> None:
    url, _ = rp.authorization_url()
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()
             if k not in ("code_challenge", "code_challenge_method")}
    callback = complete_login(f"{rp.meta['authorization_endpoint']}?{urlencode(query)}", "alice")
    assert parse_qs(urlsplit(callback).query)["error"] == ["invalid_request"]


def test_session_cookies_let_a_second_login_skip_the_prompts(op: OpenIdProvider,
                                                             rp: TinyRP) -> None:
    cookies = httpx.Cookies()
    url, _ = rp.authorization_url()
    assert "code=" in complete_login(url, "alice", cookies=cookies)
    url, _ = rp.authorization_url()
    # With the OP session and grant in the jar, the OP redirects straight back.
    assert "code=" in complete_login(url, "nobody-asked", cookies=cookies)


def test_client_secret_post_and_private_key_jwt_clients() -> None:
    rp_key = RSAKey.generate_key(2048, parameters={"kid": "rp-key-1", "use": "sig"})
    base = {"redirect_uris": [REDIRECT_URI], "grant_types": ["authorization_code"],
            "response_types": ["code"]}
    clients = [
        {**base, "client_id": "post-rp", "client_secret": CLIENT_SECRET,
         "token_endpoint_auth_method": "client_secret_post"},
        {**base, "client_id": "jwt-rp", "token_endpoint_auth_method": "private_key_jwt",
         "jwks": {"keys": [rp_key.as_dict(private=False)]}},
    ]
    with OpenIdProvider(clients=clients, accounts={"alice": ALICE}) as provider:
        meta = provider.discovery()
        for client_id, auth in [
            ("post-rp", {"client_id": "post-rp", "client_secret": CLIENT_SECRET}),
            ("jwt-rp", None),
        ]:
            verifier = secrets.token_urlsafe(48)
            challenge = base64.urlsafe_b64encode(
                hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            url = meta["authorization_endpoint"] + "?" + urlencode({
                "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT_URI,
                "scope": SCOPE, "state": "s", "nonce": "n", "code_challenge": challenge,
                "code_challenge_method": "S256"})
            code = parse_qs(urlsplit(complete_login(url, "alice")).query)["code"][0]
            if auth is None:
                now = int(time.time())
                assertion = jwt.encode(
                    {"alg": "RS256", "kid": "rp-key-1"},
                    {"iss": client_id, "sub": client_id, "aud": provider.issuer,
                     "jti": secrets.token_urlsafe(16), "iat": now, "exp": now + 60},
                    rp_key)
                auth = {"client_id": client_id, "client_assertion": assertion,
                        "client_assertion_type":
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
            response = httpx.post(meta["token_endpoint"], timeout=10, trust_env=False, data={
                "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier, **auth})
            assert response.status_code == 200, (client_id, response.text)
            assert "id_token" in response.json()


def test_the_op_process_is_stopped_on_exit() -> None:
    with OpenIdProvider(clients=[], accounts={}) as provider:
        process = provider._process
        assert process is not None and process.poll() is None
    assert process.poll() is not None


#: Stands in for server.mjs: each run appends its pid to a file; the first
#: JITPROV_TEST_SLOW_RUNS runs are silent (no READY, never exit), or with
#: JITPROV_TEST_SLOW_MODE=late start the real server 3 s late; then the real server (its argv
#: is the real one's).
_FLAKY_SERVER = """
import { appendFileSync, readFileSync } from 'node:fs';
const pids = process.env.JITPROV_TEST_PIDS;
appendFileSync(pids, `${process.pid}\\n`);
const runs = readFileSync(pids, 'utf8').trim().split('\\n').length;
const real = process.env.JITPROV_TEST_REAL_SERVER;
if (runs > Number(process.env.JITPROV_TEST_SLOW_RUNS)) {
  await import(real);
} else if (process.env.JITPROV_TEST_SLOW_MODE === 'late') {
  setTimeout(() => import(real), 3000);
} else {
  setInterval(() => {}, 1000);
}
"""


def _running(pid: int, *, within: float = 5.0) -> bool:
    """Whether ``pid`` still runs ``within`` seconds from now (a zombie has ended: an
    orphan's is reaped by init whenever it gets to it)."""
    deadline = time.monotonic() + within
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        if state == "Z":
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)


@pytest.fixture
def flaky_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file the flaky server's runs append their pids to."""
    script = tmp_path / "flaky.mjs"
    script.write_text(_FLAKY_SERVER, encoding="utf-8")
    pids = tmp_path / "pids"
    pids.write_text("", encoding="utf-8")
    monkeypatch.setattr(oidc_op, "SERVER", script)
    monkeypatch.setattr(oidc_op, "START_TIMEOUT", 2.0)
    monkeypatch.setenv("JITPROV_TEST_PIDS", str(pids))
    monkeypatch.setenv("JITPROV_TEST_REAL_SERVER", oidc_op.OP_DIR.joinpath("server.mjs").as_uri())
    return pids


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def test_a_silent_start_is_killed_and_tried_again(flaky_server: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITPROV_TEST_SLOW_RUNS", "1")
    with OpenIdProvider(clients=[], accounts={}) as provider:
        first, _second = _pids(flaky_server)
        assert not _running(first)
        assert httpx.get(provider.issuer + "/.well-known/openid-configuration",
                         timeout=10, trust_env=False).json()["issuer"] == provider.issuer


def test_a_late_first_try_behind_a_node_wrapper_is_not_mistaken_for_the_second(
        flaky_server: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`node` as a shell script that runs Node as its child (a version manager's shim): the
    first try is killed with the Node it started, which never prints the READY the second
    try waits for; nothing is left running after the OP stops."""
    shim = tmp_path / "node"
    shim.write_text(f'#!/bin/sh\n{oidc_op.node_executable()} "$@"\n', encoding="utf-8")
    shim.chmod(0o755)
    monkeypatch.setattr(oidc_op, "node_executable", lambda: str(shim))
    monkeypatch.setenv("JITPROV_TEST_SLOW_RUNS", "1")
    monkeypatch.setenv("JITPROV_TEST_SLOW_MODE", "late")
    with OpenIdProvider(clients=[], accounts={}) as provider:
        time.sleep(2)  # the first try's Node, were it alive, would print READY by now
        first, second = _pids(flaky_server)
        assert not _running(first)
        assert httpx.get(provider.issuer + "/.well-known/openid-configuration",
                         timeout=10, trust_env=False).json()["issuer"] == provider.issuer
    assert not _running(second)


def test_two_silent_starts_are_an_error_and_leave_no_process(
        flaky_server: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JITPROV_TEST_SLOW_RUNS", "2")
    with pytest.raises(oidc_op.OidcOpError, match="did not print READY in 2 tries"):
        with OpenIdProvider(clients=[], accounts={}):
            pass  # pragma: no cover - the start fails
    pids = _pids(flaky_server)
    assert len(pids) == 2 and not any(_running(pid) for pid in pids)
