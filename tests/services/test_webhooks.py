"""Webhooks against a real HTTP receiver on loopback: signed, retried, never lost, never
sent twice by two workers."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from jitprov.services import accounts, admin, audit_export, webhooks
from jitprov.services.context import ServiceContext
from jitprov.services.login.flow import provision_on_login
from jitprov.testing.builders import nurse, setup_connection
from tests.conftest import Clock

#: one event per account change (no role.* or approval.* ones), to count deliveries simply
ACCOUNT_EVENTS = ["account.created", "account.updated", "account.deactivated"]


class Receiver:
    """An HTTP endpoint that records what it gets; ``plan`` scripts its answers."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.plan: list[int | float] = []  # status codes; a float: sleep that long, then 200
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver.lock:
                    step = receiver.plan.pop(0) if receiver.plan else 200
                if isinstance(step, float):
                    time.sleep(step)
                    step = 200
                with receiver.lock:
                    if step == 200:
                        receiver.received.append(({k.lower(): v for k, v in self.headers.items()},
                                                  body))
                self.send_response(int(step))
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self) -> list[str]:
        return [h["webhook-id"] for h, _ in self.received]


@pytest.fixture
def receiver(ctx: ServiceContext) -> Iterator[Receiver]:
    ctx.webhook_allow_private = True  # the receiver is on loopback
    r = Receiver()
    yield r
    r.close()


def test_account_change_is_delivered_signed(ctx: ServiceContext, receiver: Receiver,
                                            clock: Clock) -> None:
    clock.now = datetime.now(UTC)  # receivers check the signed timestamp against their clock
    setup_connection(ctx)
    endpoint = webhooks.add_endpoint(ctx, "hospital", receiver.url, ["account.created"])
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    report = webhooks.deliver_due(ctx)
    assert (report.dispatched, report.delivered, report.failed) == (3, 1, 0)  # 2 role events
    [(headers, body)] = receiver.received
    payload = Webhook(endpoint.secret).verify(body, headers)  # Standard Webhooks signature
    assert payload["type"] == "account.created"
    assert payload["data"]["account_id"] == account_id
    with pytest.raises(Exception):  # noqa: B017 - any verification error: the wrong key
        Webhook("whsec_" + "A" * 44).verify(body, headers)


def test_only_subscribed_types_of_the_tenant_are_sent(ctx: ServiceContext,
                                                      receiver: Receiver) -> None:
    setup_connection(ctx)
    admin.create_tenant(ctx, "clinic")
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ["account.deactivated"])
    webhooks.add_endpoint(ctx, "clinic", receiver.url, ["*"])
    account_id = provision_on_login(ctx, "idp", nurse()).account_id
    accounts.set_account_status(ctx, account_id, "deactivated", reason="left")
    webhooks.deliver_due(ctx)
    types = [json.loads(body)["type"] for _, body in receiver.received]
    assert types == ["account.deactivated"]


def test_failures_are_retried_with_backoff_until_delivered_once(
        ctx: ServiceContext, receiver: Receiver, clock: Clock) -> None:
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    receiver.plan = [500, 503, 502]
    provision_on_login(ctx, "idp", nurse())
    assert webhooks.deliver_due(ctx).failed == 1
    assert webhooks.deliver_due(ctx).failed == 0  # not due yet: backing off
    for _ in range(3):
        clock.advance(hours=1)
        webhooks.deliver_due(ctx)
    assert len(receiver.received) == 1
    [delivery] = webhooks.list_deliveries(ctx, "hospital")
    assert (delivery.status, delivery.attempts, delivery.last_status) == ("delivered", 4, 200)


def test_a_receiver_down_for_an_hour_loses_nothing(ctx: ServiceContext, receiver: Receiver,
                                                   clock: Clock) -> None:
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    for n in range(3):
        provision_on_login(ctx, "idp", nurse(subject=f"u{n}", email=f"u{n}@h.example"))
    receiver.plan = [503] * 1000
    start = clock.now
    while clock.now - start < timedelta(hours=1):
        webhooks.deliver_due(ctx)
        clock.advance(minutes=1)
    assert receiver.received == []
    receiver.plan = []
    clock.advance(hours=1)
    webhooks.deliver_due(ctx)
    assert len(receiver.ids()) == len(set(receiver.ids())) == 3


def test_dead_letter_after_the_last_attempt_then_replay(ctx: ServiceContext,
                                                        receiver: Receiver,
                                                        clock: Clock) -> None:
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    receiver.plan = [500] * webhooks.MAX_ATTEMPTS
    provision_on_login(ctx, "idp", nurse())
    for _ in range(webhooks.MAX_ATTEMPTS + 2):
        webhooks.deliver_due(ctx)
        clock.advance(hours=3)
    [dead] = webhooks.list_deliveries(ctx, "hospital", status="dead")
    assert dead.attempts == webhooks.MAX_ATTEMPTS
    webhooks.replay(ctx, dead.id)
    webhooks.deliver_due(ctx)
    assert [d.status for d in webhooks.list_deliveries(ctx, "hospital")] == ["delivered"]
    assert "webhook.replayed" in [e.type for e in audit_export.iter_events(ctx, "hospital")]


def test_a_receiver_that_times_out_is_retried(ctx: ServiceContext, receiver: Receiver,
                                              clock: Clock,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhooks, "SEND_TIMEOUT", 0.2)
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    receiver.plan = [1.0]  # answers after a second: too late
    provision_on_login(ctx, "idp", nurse())
    assert webhooks.deliver_due(ctx).failed == 1
    [delivery] = webhooks.list_deliveries(ctx, "hospital")
    assert delivery.last_error == "ReadTimeout"
    clock.advance(minutes=5)
    assert webhooks.deliver_due(ctx).delivered == 1


def test_two_workers_deliver_each_event_once(ctx: ServiceContext, receiver: Receiver) -> None:
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    for n in range(20):
        provision_on_login(ctx, "idp", nurse(subject=f"u{n}", email=f"u{n}@h.example"))
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        for _ in range(5):
            webhooks.deliver_due(ctx, limit=3)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    webhooks.deliver_due(ctx)
    assert len(receiver.ids()) == 20
    assert len(set(receiver.ids())) == 20


def test_retry_delay_doubles_with_jitter_and_caps() -> None:
    import random

    rng = random.Random(7)  # noqa: S311 - a seeded jitter source
    delays = [webhooks.retry_delay(n, rng) for n in range(1, 12)]
    assert 4.0 <= delays[0] <= 6.0
    assert 8.0 <= delays[1] <= 12.0
    assert max(delays) <= 3600 * 1.2
    assert delays[-1] >= 3600 * 0.8


@pytest.mark.parametrize("url", ["http://127.0.0.1:5432/", "http://169.254.169.254/latest",
                                 "http://[::1]:6379/", "http://10.1.2.3/hook",
                                 "http://localhost/x", "https://no-such-host.invalid/x"])
def test_private_and_unresolvable_destinations_are_refused_alike(ctx: ServiceContext,
                                                                 url: str) -> None:
    """One text whether the host does not resolve or resolves to a private address: adding
    a webhook cannot tell a tenant admin which internal names exist."""
    from jitprov.services.webhooks import UNSAFE, UnsafeDestination

    setup_connection(ctx)
    with pytest.raises(UnsafeDestination) as refused:
        webhooks.add_endpoint(ctx, "hospital", url, ["*"])
    assert str(refused.value) == UNSAFE
    assert refused.value.__cause__ is None and refused.value.__context__ is None


@pytest.mark.parametrize("url", ["http://[::1/", "http://h:99999/x", "ftp://h/x",
                                 "https://user:pw@h.example/x", "https://" + "a" * 2100])
def test_malformed_urls_are_a_clear_error(ctx: ServiceContext, url: str) -> None:
    from jitprov.core.errors import InvalidInput

    setup_connection(ctx)
    with pytest.raises(InvalidInput):
        webhooks.add_endpoint(ctx, "hospital", url, ["*"])


def test_a_late_result_never_undoes_another_workers_delivery(
        ctx: ServiceContext, receiver: Receiver, clock: Clock) -> None:
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    provision_on_login(ctx, "idp", nurse())
    from jitprov.store.unit_of_work import UnitOfWork

    with UnitOfWork(ctx.db) as uow:  # worker A claims, then stalls past its lease
        uow.outbox.webhooks.fan_out(clock.now)
        [stale] = uow.outbox.webhooks.claim_due(clock.now, lease=timedelta(seconds=1), claim="A")
        uow.commit()
    clock.advance(seconds=5)
    assert webhooks.deliver_due(ctx).delivered == 1  # worker B takes it over and delivers
    with UnitOfWork(ctx.db) as uow:  # A's timeout arrives late
        written = uow.outbox.webhooks.record_attempt(
            stale.id, claim="A", delivered=False, status_code=None, error="ReadTimeout",
            now=clock.now, next_attempt_at=clock.now + timedelta(minutes=1))
        uow.commit()
    assert written is False
    [delivery] = webhooks.list_deliveries(ctx, "hospital")
    assert (delivery.status, delivery.attempts) == ("delivered", 1)


def test_an_unexpected_error_is_a_failed_attempt_not_a_stalled_batch(
        ctx: ServiceContext, receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    provision_on_login(ctx, "idp", nurse())
    provision_on_login(ctx, "idp", nurse(subject="u2", email="u2@h.example"))
    real = webhooks._send
    calls = {"n": 0}

    def first_explodes(context: ServiceContext, delivery: object) -> tuple[bool, int | None,
                                                                           str | None]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise UnicodeError("label too long")
        return real(context, delivery)  # type: ignore[arg-type]

    monkeypatch.setattr(webhooks, "_send", first_explodes)
    report = webhooks.deliver_due(ctx)
    assert (report.delivered, report.failed) == (1, 1)
    errors = {d.last_error for d in webhooks.list_deliveries(ctx, "hospital")}
    assert errors == {"UnicodeError", None}


def test_only_a_dead_or_delivered_delivery_can_be_replayed(
        ctx: ServiceContext, receiver: Receiver) -> None:
    from jitprov.core.errors import Conflict

    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    receiver.plan = [500]
    provision_on_login(ctx, "idp", nurse())
    webhooks.deliver_due(ctx)
    [pending] = webhooks.list_deliveries(ctx, "hospital")
    with pytest.raises(Conflict):
        webhooks.replay(ctx, pending.id)


def test_backlog_gauge_counts_what_waits(ctx: ServiceContext, receiver: Receiver,
                                         clock: Clock) -> None:
    from jitprov.services import metrics

    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    receiver.plan = [503, 503]
    provision_on_login(ctx, "idp", nurse())
    provision_on_login(ctx, "idp", nurse(subject="u2", email="u2@h.example"))
    webhooks.deliver_due(ctx)
    assert metrics.REGISTRY.get_sample_value("jitprov_webhook_backlog") == 2  # retrying
    clock.advance(hours=1)
    webhooks.deliver_due(ctx)
    assert metrics.REGISTRY.get_sample_value("jitprov_webhook_backlog") == 0


def test_star_subscribes_to_every_event_type(ctx: ServiceContext, receiver: Receiver) -> None:
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ["*"])
    provision_on_login(ctx, "idp", nurse())
    webhooks.deliver_due(ctx)
    types = sorted(json.loads(body)["type"] for _, body in receiver.received)
    assert types == ["account.created", "role.granted", "role.granted"]


def _worker_process(url: str, passes: int) -> int:
    from jitprov.services.secretbox import SecretBox
    from jitprov.store.database import Database
    from tests.conftest import TEST_SECRET_KEY

    db = Database.connect(url, pool_size=1)
    ctx = ServiceContext(db=db, secretbox=SecretBox(TEST_SECRET_KEY),
                         webhook_allow_private=True)
    try:
        return sum(webhooks.deliver_due(ctx, limit=3).delivered for _ in range(passes))
    finally:
        db.dispose()


def test_two_server_processes_deliver_each_event_once(ctx: ServiceContext, receiver: Receiver,
                                                      database_url: str) -> None:
    import multiprocessing

    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    for n in range(24):
        provision_on_login(ctx, "idp", nurse(subject=f"u{n}", email=f"u{n}@h.example"))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        delivered = sum(pool.starmap(_worker_process, [(database_url, 10), (database_url, 10)]))
    assert delivered == 24
    assert len(receiver.ids()) == len(set(receiver.ids())) == 24


def test_a_send_connects_to_the_address_that_was_checked(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the host may resolve to a private address right after the check; the
    send is pinned to the checked address (the server's guard connects there) while the URL,
    Host and TLS keep the name."""
    import socket

    import httpx

    from jitprov.services.outbound import GuardedTransport, pinned

    def resolve(host: str, port: object, *args: object, **kwargs: object) -> list[object]:
        assert host == "hooks.example"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 443))]

    seen: list[tuple[httpx.Request, tuple[str, str] | None]] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append((request, pinned()))
        return httpx.Response(204)

    setup_connection(ctx)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    # checked when added, then at the send; a third lookup (a connect by name) would rebind
    answers = iter(["93.184.216.34", "93.184.216.34", "127.0.0.1"])
    webhooks.add_endpoint(ctx, "hospital", "https://hooks.example:8443/in", ACCOUNT_EVENTS)
    ctx.http = httpx.Client(transport=GuardedTransport(ctx.outbound,
                                                       httpx.MockTransport(transport)))
    provision_on_login(ctx, "idp", nurse())
    webhooks.deliver_due(ctx)
    [(request, pin)] = seen
    assert pin == ("hooks.example", "93.184.216.34")
    assert (request.url.host, request.url.port) == ("hooks.example", 8443)
    assert request.headers["host"] == "hooks.example:8443"
    assert next(answers) == "127.0.0.1"  # never looked up


def test_an_international_host_is_checked_and_sent_to_under_one_name(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    """``faß.example`` is ``xn--fa-hia.example`` to TLS and Host (IDNA 2008) but would be
    ``fass.example`` to the resolver's own encoding: the address is checked for the name the
    send speaks to, and the guard accepts the check for that name."""
    import socket

    import httpx

    from jitprov.services.outbound import GuardedTransport, pinned

    looked_up: list[str] = []

    def resolve(host: str, port: object, *args: object, **kwargs: object) -> list[object]:
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 443))]

    seen: list[tuple[str, str] | None] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(pinned())
        return httpx.Response(204)

    setup_connection(ctx)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    webhooks.add_endpoint(ctx, "hospital", "https://faß.example/in", ACCOUNT_EVENTS)
    ctx.http = httpx.Client(transport=GuardedTransport(ctx.outbound,
                                                       httpx.MockTransport(transport)))
    provision_on_login(ctx, "idp", nurse())
    webhooks.deliver_due(ctx)
    assert looked_up == ["xn--fa-hia.example"] * 2  # added, then sent
    assert seen == [("xn--fa-hia.example", "93.184.216.34")]
    [delivery] = webhooks.list_deliveries(ctx, "hospital")
    assert delivery.status == "delivered"


def test_a_destination_that_turns_private_is_not_sent_to(
        ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    import httpx

    answers = iter(["93.184.216.34", "10.0.0.7"])

    def resolve(host: str, port: object, *args: object, **kwargs: object) -> list[object]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (next(answers), 443))]

    seen: list[httpx.Request] = []

    def transport(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    setup_connection(ctx)
    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    webhooks.add_endpoint(ctx, "hospital", "https://hooks.example/in", ACCOUNT_EVENTS)
    ctx.http = httpx.Client(transport=httpx.MockTransport(transport))
    provision_on_login(ctx, "idp", nurse())
    webhooks.deliver_due(ctx)
    assert seen == []
    [delivery] = webhooks.list_deliveries(ctx, "hospital")
    assert delivery.status == "pending" and delivery.attempts == 1


def test_a_dead_workers_claims_free_up_within_one_send_lease(
        ctx: ServiceContext, receiver: Receiver, clock: Clock) -> None:
    from jitprov.store.unit_of_work import UnitOfWork

    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    for i in range(3):
        provision_on_login(ctx, "idp", nurse(subject=f"u{i}", email=f"u{i}@h.example"))
    with UnitOfWork(ctx.db) as uow:  # a worker claims a batch, then its node dies
        uow.outbox.webhooks.fan_out(clock.now)
        claimed = uow.outbox.webhooks.claim_due(clock.now, lease=webhooks.SEND_LEASE, claim="dead")
        uow.commit()
    assert len(claimed) == 3
    assert webhooks.deliver_due(ctx).delivered == 0  # still leased
    clock.advance(seconds=webhooks.SEND_LEASE.total_seconds() + 1)
    assert webhooks.deliver_due(ctx).delivered == 3
    assert len(receiver.ids()) == 3


def test_a_delivery_taken_over_while_waiting_in_a_batch_is_not_sent_twice(
        ctx: ServiceContext, receiver: Receiver, clock: Clock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from jitprov.store.unit_of_work import UnitOfWork

    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    for i in range(4):
        provision_on_login(ctx, "idp", nurse(subject=f"u{i}", email=f"u{i}@h.example"))
    real = webhooks._send
    taken: list[str] = []

    def slow(context: ServiceContext, delivery: object) -> tuple[bool, int | None, str | None]:
        result = real(context, delivery)  # type: ignore[arg-type]
        clock.advance(seconds=25)  # each send takes 25 s: the 4th waits past its lease
        if len(receiver.ids()) == 3:
            with UnitOfWork(ctx.db) as uow:  # another worker takes what is due now
                taken.extend(f"msg_{d.outbox_id}" for d in uow.outbox.webhooks.claim_due(
                    clock.now, lease=webhooks.SEND_LEASE, claim="other"))
                uow.commit()
        return result

    monkeypatch.setattr(webhooks, "_send", slow)
    assert webhooks.deliver_due(ctx).delivered == 3
    assert len(taken) == 1  # only the one still waiting: the one in flight renewed its lease
    assert taken[0] not in receiver.ids()  # left to the worker that holds it now


def test_the_servers_guarded_client_sends_webhooks_where_the_webhook_setting_allows(
        ctx: ServiceContext, receiver: Receiver) -> None:
    """In a served process every outbound request goes through the outbound guard; a webhook
    to a private receiver allowed by JITPROV_WEBHOOK_ALLOW_PRIVATE still goes out (checked and
    pinned by the webhook sender), and stops when the setting is off."""
    from jitprov.services.outbound import OutboundPolicy, guarded_client

    ctx.http = guarded_client(OutboundPolicy())
    setup_connection(ctx)
    webhooks.add_endpoint(ctx, "hospital", receiver.url, ACCOUNT_EVENTS)
    provision_on_login(ctx, "idp", nurse())
    assert webhooks.deliver_due(ctx).delivered == 1
    assert len(receiver.received) == 1
    ctx.webhook_allow_private = False
    provision_on_login(ctx, "idp", nurse(subject="u2", email="u2@h.example"))
    assert webhooks.deliver_due(ctx).delivered == 0
    assert len(receiver.received) == 1
