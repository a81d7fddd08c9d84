"""The SAML sign-in service on SQLite and PostgreSQL: start -> ACS -> account, and every way
an ACS request is refused (each audited as ``login.failed``, nothing else written)."""

from __future__ import annotations

import datetime as dt

import httpx
import pytest
import sqlalchemy as sa

from jitprov.core.errors import InvalidInput, JitprovError
from jitprov.core.provisioning import Create, NoChange
from jitprov.jobs.purge import purge_saml_replay
from jitprov.jobs.saml_metadata import refresh_due
from jitprov.services import admin, audit_export
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import LoginResult
from jitprov.services.login.kinds import MAX_RETURN_TO_CHARS, start_login
from jitprov.services.login.saml import complete_saml_login
from jitprov.services.login.state import LOGIN_REQUEST_LABEL
from jitprov.store import tables as t
from jitprov.testing.saml_idp import (
    BASE_URL,
    SAML_MAPPING,
    FakeSamlIdp,
    ada,
    add_connection,
    request_id_of,
)
from tests.conftest import Clock

ACS = f"{BASE_URL}/sso/idp/saml/acs"
AUDIENCE = f"{BASE_URL}/sso/idp/saml/metadata"
#: ``browser`` meaning the binding cookie the login's own start gave (see ``start``)
OWN = "the browser that started the login"
COOKIES: dict[str, str] = {}


def events(ctx: ServiceContext) -> list[tuple[str, object]]:
    return [(e.type, e.data.get("code")) for e in audit_export.iter_events(ctx, "hospital")]


def counts(ctx: ServiceContext) -> tuple[int, int]:
    """(accounts, sessions) in the database."""
    with ctx.db.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
            for table in (t.account, t.session))


def start(ctx: ServiceContext, return_to: str = "/me") -> tuple[str, str]:
    """(state, AuthnRequest ID) of a new SP-initiated login; its binding cookie is kept in
    ``COOKIES``."""
    started = start_login(ctx, "idp", return_to, base_url=BASE_URL, dev_mode=False)
    assert started.location.startswith("https://idp.test.example/sso?SAMLRequest=")
    COOKIES[started.state] = started.cookie
    return started.state, request_id_of(started.location)


def respond(idp: FakeSamlIdp, ctx: ServiceContext, in_response_to: str | None,
            subject: str = "ada", **kwargs: object) -> str:
    attributes = kwargs.pop("attributes", ada())
    return idp.response(acs_url=ACS, audience=AUDIENCE, subject=subject,
                        attributes=attributes,  # type: ignore[arg-type]
                        in_response_to=in_response_to, now=ctx.clock(),
                        **kwargs)  # type: ignore[arg-type]


def complete(ctx: ServiceContext, response: str, relay_state: str | None,
             browser: str | None = OWN) -> LoginResult:
    if browser == OWN:
        browser = COOKIES.get(relay_state or "")
    return complete_saml_login(ctx, "idp", response, relay_state, browser=browser,
                               base_url=BASE_URL, request_id="req-1")


def refused(ctx: ServiceContext, response: str, relay_state: str | None,
            browser: str | None = OWN) -> str:
    """The code of the refusal; asserts it was audited and wrote no account or session."""
    before = counts(ctx)
    with pytest.raises(JitprovError) as caught:
        complete(ctx, response, relay_state, browser)
    code = str(caught.value.code)
    assert events(ctx)[-1] == ("login.failed", code)
    assert counts(ctx) == before
    return code


@pytest.fixture
def idp(ctx: ServiceContext) -> FakeSamlIdp:
    return add_connection(ctx)


def test_first_login_creates_the_account_and_goes_back(ctx: ServiceContext,
                                                       idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx, "/apps/rota")
    result = complete(ctx, respond(idp, ctx, request_id), state)
    assert isinstance(result.decision, Create)
    assert result.return_to == "/apps/rota"
    assert result.session_token
    assert counts(ctx) == (1, 1)
    assert events(ctx)[-1] == ("account.created", None)


def test_second_login_finds_the_same_account(ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    first = complete(ctx, respond(idp, ctx, request_id), state)
    state, request_id = start(ctx)
    second = complete(ctx, respond(idp, ctx, request_id), state)
    assert isinstance(second.decision, NoChange)
    assert second.account_id == first.account_id


def test_the_same_response_twice_is_refused_the_second_time(ctx: ServiceContext,
                                                           idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    response = respond(idp, ctx, request_id)
    complete(ctx, response, state)
    assert refused(ctx, response, state) == "login_expired"


def test_a_replayed_assertion_id_is_refused_even_in_a_new_login(ctx: ServiceContext,
                                                                idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    complete(ctx, respond(idp, ctx, request_id, assertion_id="_same"), state)
    state, request_id = start(ctx)
    assert refused(ctx, respond(idp, ctx, request_id, assertion_id="_same"), state) == "replay"


def test_of_concurrent_posts_of_one_login_exactly_one_signs_in(ctx: ServiceContext,
                                                               idp: FakeSamlIdp) -> None:
    """The same form posted by 8 threads at once (a double submit, an attacker racing the
    browser): the spend and the assertion's record let exactly one through, on every
    database; the others are refused as spent or replayed, and nothing of theirs is kept."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    state, request_id = start(ctx)
    response = respond(idp, ctx, request_id)
    barrier = threading.Barrier(8)

    def post(_: int) -> str:
        barrier.wait()
        try:
            complete(ctx, response, state)
        except JitprovError as exc:
            return str(exc.code)
        return "signed in"

    with ThreadPoolExecutor(8) as pool:
        outcomes = sorted(pool.map(post, range(8)))
    assert outcomes.count("signed in") == 1, outcomes
    assert set(outcomes) - {"signed in"} <= {"login_expired", "replay"}, outcomes
    assert counts(ctx) == (1, 1)


def test_a_replayed_idp_initiated_response_is_refused(ctx: ServiceContext) -> None:
    idp = add_connection(ctx, allow_idp_initiated=True)
    response = respond(idp, ctx, None)
    complete(ctx, response, None)
    assert refused(ctx, response, None) == "replay"


def test_the_replay_cache_forgets_only_expired_assertions(ctx: ServiceContext, clock: Clock,
                                                         idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    complete(ctx, respond(idp, ctx, request_id), state)
    assert purge_saml_replay(ctx) == 0
    clock.advance(minutes=5, seconds=121)  # NotOnOrAfter + the 120 s of allowed skew
    assert purge_saml_replay(ctx) == 1


def test_a_response_for_another_browsers_login_is_refused(ctx: ServiceContext,
                                                         idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    response = respond(idp, ctx, request_id)
    assert refused(ctx, response, state, browser="attacker-nonce") == "login_foreign"
    assert refused(ctx, response, state, browser=None) == "login_foreign"
    # a foreign browser cannot spend the login: its own browser still completes it
    assert isinstance(complete(ctx, response, state).decision, Create)


def test_the_cookie_of_another_login_or_an_altered_one_is_refused(
        ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    other_state, _ = start(ctx)
    response = respond(idp, ctx, request_id)
    assert refused(ctx, response, state, browser=COOKIES[other_state]) == "login_foreign"
    cookie = COOKIES[state]
    altered = cookie[:40] + ("A" if cookie[40] != "A" else "B") + cookie[41:]
    assert refused(ctx, response, state, browser=altered) == "login_foreign"
    assert isinstance(complete(ctx, response, state).decision, Create)


def test_a_login_request_sealed_for_another_purpose_is_refused(
        ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    """A value sealed under the connection secrets' keys (same configured key, another
    label) never opens as a login request."""
    state, request_id = start(ctx)
    opened = ctx.secretbox.derive(LOGIN_REQUEST_LABEL).open(COOKIES[state])
    resealed = ctx.secretbox.seal(opened)
    assert refused(ctx, respond(idp, ctx, request_id), state,
                   browser=resealed) == "login_foreign"


def test_an_expired_login_request_is_refused(ctx: ServiceContext, clock: Clock,
                                             idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    clock.advance(minutes=10)  # the login request's lifetime (login_request_ttl)
    assert refused(ctx, respond(idp, ctx, request_id), state) == "login_expired"


def test_starting_a_login_writes_nothing(ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    with ctx.db.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(t.login_request)
                              ).scalar_one()
        start(ctx)
        start(ctx, "/apps/wiki")
        after = conn.execute(sa.select(sa.func.count()).select_from(t.login_request)
                             ).scalar_one()
    assert (before, after) == (0, 0)


def test_a_return_to_too_long_for_a_cookie_is_refused(ctx: ServiceContext,
                                                      idp: FakeSamlIdp) -> None:
    start(ctx, "/" + "a" * (MAX_RETURN_TO_CHARS - 1))
    with pytest.raises(InvalidInput, match="return_to: longer than 1024"):
        start(ctx, "/" + "a" * MAX_RETURN_TO_CHARS)


def test_a_response_without_a_binding_cookie_is_refused(ctx: ServiceContext,
                                                       idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    assert refused(ctx, respond(idp, ctx, request_id), state, browser=None) == "login_foreign"


def test_a_stripped_in_response_to_is_refused(ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    state, _ = start(ctx)
    assert refused(ctx, respond(idp, ctx, None), state) in (
        "in_response_to_mismatch", "unsolicited_response")


def test_a_foreign_in_response_to_is_refused(ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    state, _ = start(ctx)
    _, other_request = start(ctx)
    assert refused(ctx, respond(idp, ctx, other_request), state) == "in_response_to_mismatch"


def test_idp_initiated_is_refused_by_default(ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    assert refused(ctx, respond(idp, ctx, None), None) == "unsolicited_response"
    assert refused(ctx, respond(idp, ctx, None), "/apps/rota") == "unsolicited_response"


def test_idp_initiated_is_accepted_when_enabled(ctx: ServiceContext) -> None:
    idp = add_connection(ctx, allow_idp_initiated=True)
    result = complete(ctx, respond(idp, ctx, None), "/apps/rota", browser=None)
    assert isinstance(result.decision, Create)
    assert result.return_to == "/apps/rota"
    result = complete(ctx, respond(idp, ctx, None), f"{BASE_URL}/apps/wiki", browser=None)
    assert result.return_to == "/apps/wiki"


def test_idp_initiated_cannot_carry_an_in_response_to(ctx: ServiceContext) -> None:
    idp = add_connection(ctx, allow_idp_initiated=True)
    _, request_id = start(ctx)
    assert refused(ctx, respond(idp, ctx, request_id), None) in (
        "in_response_to_mismatch", "unsolicited_response")


@pytest.mark.parametrize("relay_state", ["https://evil.example/", "//evil.example/x",
                                         "/\\evil.example", "javascript:alert(1)"])
def test_an_off_site_relay_state_is_refused(ctx: ServiceContext, relay_state: str) -> None:
    idp = add_connection(ctx, allow_idp_initiated=True)
    assert refused(ctx, respond(idp, ctx, None), relay_state) == "relay_state_refused"


def test_a_response_signed_by_another_key_is_refused(ctx: ServiceContext,
                                                    idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    response = respond(idp, ctx, request_id)
    tampered = response.replace(response[200:204], "AAAA") if response[200:204] != "AAAA" \
        else response.replace(response[200:204], "BBBB")
    assert refused(ctx, tampered, state) in ("signature_invalid", "invalid_response")


def test_an_expired_response_is_refused(ctx: ServiceContext, clock: Clock,
                                        idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    response = respond(idp, ctx, request_id)
    clock.advance(minutes=9)
    assert refused(ctx, response, state) == "expired"


def test_sp_metadata_names_the_acs_and_entity_id(ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    from jitprov.services.login.saml import sp_metadata

    xml = sp_metadata(ctx, "idp", base_url=BASE_URL).decode()
    assert f'entityID="{AUDIENCE}"' in xml
    assert f'Location="{ACS}"' in xml


def test_not_on_or_after_keeps_the_id_until_the_skew_ends(ctx: ServiceContext, clock: Clock,
                                                          idp: FakeSamlIdp) -> None:
    state, request_id = start(ctx)
    complete(ctx, respond(idp, ctx, request_id, lifetime=dt.timedelta(minutes=1)), state)
    clock.advance(minutes=1, seconds=119)
    assert purge_saml_replay(ctx) == 0


# -- IdP metadata refresh (jobs/saml_metadata.py) -------------------------------------------

class MetadataUrl:
    """The IdP's metadata URL, served through httpx.MockTransport (no network)."""

    url = "https://idp.test.example/metadata"

    def __init__(self, document: bytes) -> None:
        self.document = document
        self.status = 200
        self.fetches = 0

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.fetches += 1
        return httpx.Response(self.status, content=self.document)


@pytest.fixture
def served(ctx: ServiceContext) -> tuple[ServiceContext, MetadataUrl]:
    served = MetadataUrl(FakeSamlIdp().metadata())
    node = ServiceContext(db=ctx.db, secretbox=ctx.secretbox, clock=ctx.clock,
                          http=httpx.Client(transport=httpx.MockTransport(served.handler)))
    admin.create_tenant(node, "hospital")
    admin.add_saml_connection(node, tenant="hospital", slug="idp", metadata_xml=None,
                              metadata_url=served.url, mapping=SAML_MAPPING,
                              mapping_source="saml.yaml")
    return node, served


def test_metadata_is_refreshed_only_when_due_and_once_per_period(
        served: tuple[ServiceContext, MetadataUrl], clock: Clock) -> None:
    node, url = served
    assert refresh_due(node) == []
    clock.advance(minutes=59)
    assert refresh_due(node) == []
    assert url.fetches == 1  # the registration's
    clock.advance(minutes=2)
    assert [r.outcome for r in refresh_due(node)] == ["unchanged"]
    assert refresh_due(node) == []  # claimed for this period: nothing until the next one
    assert url.fetches == 2
    assert admin.get_connection(node, "idp").version == 1


def test_a_certificate_rollover_reaches_the_next_login(
        served: tuple[ServiceContext, MetadataUrl], clock: Clock) -> None:
    node, url = served
    rolled = FakeSamlIdp(generation=1)
    url.document = rolled.metadata()
    clock.advance(hours=1, seconds=1)
    [report] = refresh_due(node)
    assert (report.outcome, report.version) == ("changed", 2)
    assert events(node)[-1][0] == "connection.metadata_refreshed"
    state, request_id = start(node)
    result = complete(node, respond(rolled, node, request_id), state)
    assert isinstance(result.decision, Create)
    state, request_id = start(node)
    assert refused(node, respond(FakeSamlIdp(), node, request_id), state) == (
        "signature_invalid")


@pytest.mark.parametrize("breakage", ["http_error", "not_metadata", "other_entity"])
def test_a_failed_refresh_keeps_the_old_config_and_is_audited(
        served: tuple[ServiceContext, MetadataUrl], clock: Clock, breakage: str) -> None:
    node, url = served
    before = admin.get_connection(node, "idp")
    if breakage == "http_error":
        url.status = 503
    elif breakage == "not_metadata":
        url.document = b"<html>maintenance</html>"
    else:
        url.document = FakeSamlIdp(entity_id="https://evil.example/idp").metadata()
    clock.advance(hours=2)
    [report] = refresh_due(node)
    assert report.outcome == "failed"
    after = admin.get_connection(node, "idp")
    assert (after.version, after.config) == (before.version, before.config)
    assert events(node)[-1][0] == "connection.metadata_refresh_failed"
    state, request_id = start(node)  # sign-in still works with the old configuration
    assert isinstance(complete(node, respond(FakeSamlIdp(), node, request_id), state).decision,
                      Create)
