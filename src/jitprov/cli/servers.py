"""``jitprov serve`` and ``jitprov dev``: start uvicorn on the composed app."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
from datetime import timedelta
from importlib import resources

import typer
import uvicorn

from jitprov.cli.devices import enrolment_url
from jitprov.core.errors import InvalidInput, NotFound
from jitprov.jobs import devices as device_jobs
from jitprov.jobs import entitlements as entitlement_jobs
from jitprov.jobs import purge, saml_metadata, webhooks
from jitprov.services import admin, console, devices, instance, logs, metrics
from jitprov.services.context import build_context, open_database
from jitprov.services.login.kinds import CONNECTION_KINDS
from jitprov.services.readiness import readiness
from jitprov.settings import Settings
from jitprov.store.database import Database
from jitprov.web.asgi import serving_app

DEMO_TENANT = "demo"
DEMO_CONNECTION = "demo"
#: seconds a worker process of ``serve --workers N`` may take to start and to answer the
#: supervisor's later pings: uvicorn's default of 5 s, on a loaded or cold host (a container
#: starting beside others), kills each worker before it has imported and restarts it forever
WORKER_START_TIMEOUT = 60


def demo_mapping() -> str:
    return resources.files("jitprov.cli").joinpath("demo-mapping.yaml").read_text("utf-8")


#: the addresses of this host only, which ``dev`` names ``localhost``
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _base_url(settings: Settings, host: str, port: int, *, dev: bool = False) -> Settings:
    """The URL to print and build links from when ``JITPROV_BASE_URL`` is not set. ``dev`` on
    this host only says ``localhost``: passkeys need a domain name (an IP address is no
    WebAuthn RP ID), and one name everywhere keeps the session cookie on the pages they use."""
    if os.environ.get("JITPROV_BASE_URL"):
        return settings
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # noqa: S104 - display only
    if dev and shown in LOOPBACK:
        shown = "localhost"
    return settings.with_overrides(base_url=f"http://{shown}:{port}")


def check_port(host: str, port: int) -> None:
    """Refuse, before anything is printed or started, a port something else listens on."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise InvalidInput(f"cannot listen on {host}:{port}: "
                               f"{exc.strerror or exc}; choose another with --port") from None


def run_serve(settings: Settings, *, host: str, port: int, workers: int = 1) -> None:
    check_port(host, port)
    settings = _base_url(settings, host, port)
    # the server's log format from the first line on: opening the database may already say
    # something (a transaction pooler noticed); refusals below are still one-line CLI errors
    logs.configure(settings.ops.log_format, settings.ops.log_level)
    db = open_database(settings)
    try:
        _serve(settings, db, host=host, port=port, workers=workers)
    finally:
        db.dispose()


def _metrics_dir(workers: int) -> str | None:
    """Several workers: every process (the workers, and this one, where the jobs run) writes
    its metrics to one directory that any worker's /metrics reads whole; a fresh one per run
    (counters start at 0 with the server), which the caller removes at exit, unless the
    operator set one. Returns the directory made here, if any."""
    if workers == 1:
        return None
    directory = metrics.multiprocess_dir()
    own_dir = None
    if directory is None:
        own_dir = directory = tempfile.mkdtemp(prefix="jitprov-metrics-")
    metrics.use_multiprocess_dir(directory)
    return own_dir


def _serve(settings: Settings, db: Database, *, host: str, port: int, workers: int) -> None:
    db.require_current()
    ctx = build_context(settings, db)
    state = readiness(ctx)
    if state.failing == "secret_key":  # a wrong key would fail only at a login's callback
        raise InvalidInput(f"not starting: {state.checks['secret_key']} "
                           f"(key from {settings.key_source})")
    instance.record_base_url(ctx, settings.base_url)  # for the links other commands print
    dev_only = [c.slug for c in admin.list_connections(ctx)
                if c.enabled and CONNECTION_KINDS.get(c.kind) is not None
                and CONNECTION_KINDS[c.kind].dev_only]
    if dev_only:
        raise InvalidInput(
            f"connection(s) {', '.join(dev_only)} use the dev-only kind mock (the demo IdP "
            "signs in anyone as anyone); `jitprov connection disable SLUG` them, or run "
            "`jitprov dev`")
    # from here on the process is the server: its metrics directory
    own_dir = _metrics_dir(workers)
    typer.echo(f"jitprov serving {settings.base_url} (database {db.safe_url}, "
               f"{workers} worker{'s' if workers > 1 else ''})")
    stop = threading.Event()
    purge.run_periodically(ctx, timedelta(minutes=15), stop)
    webhooks.run_periodically(ctx, timedelta(seconds=1), stop)
    entitlement_jobs.run_periodically(ctx, timedelta(seconds=1), stop)  # large SCIM changes
    saml_metadata.run_periodically(ctx, saml_metadata.CHECK_EVERY, stop)
    device_jobs.run_periodically(ctx, device_jobs.PROBE_EVERY, stop)  # IdP health, challenges
    try:
        # no uvicorn access log (callback URLs carry codes and states): web/observability.py
        # writes one line per request, path without query string; it also reads the proxy
        # headers, from JITPROV_TRUSTED_PROXIES only; uvicorn's lines go through logs.configure
        if workers > 1:
            # each worker process imports the factory and reads the same environment; the
            # jobs above run once, in this supervising process
            # (the secret key comes from the environment or the database's key file, as here)
            os.environ.update(JITPROV_DATABASE_URL=settings.database_url,
                              JITPROV_BASE_URL=settings.base_url)
            uvicorn.run("jitprov.web.asgi:app_from_environment", factory=True,
                        workers=workers, host=host, port=port, log_level="info",
                        proxy_headers=False, access_log=False, log_config=None,
                        timeout_worker_healthcheck=WORKER_START_TIMEOUT)
        else:
            # workers=1 given: uvicorn would otherwise take WEB_CONCURRENCY from the
            # environment, which an app object (not an import string) cannot serve
            uvicorn.run(serving_app(settings, ctx), host=host, port=port, workers=1,
                        log_level="info", proxy_headers=False, access_log=False,
                        log_config=None)
    finally:
        stop.set()
        if own_dir is not None:
            shutil.rmtree(own_dir, ignore_errors=True)


def run_dev(settings: Settings, *, host: str, port: int) -> None:
    check_port(host, port)
    settings = _base_url(settings, host, port, dev=True)
    db = open_database(settings)
    try:
        _dev(settings, db, host=host, port=port)
    finally:
        db.dispose()


def _dev(settings: Settings, db: Database, *, host: str, port: int) -> None:
    db.upgrade()
    ctx = build_context(settings, db)
    instance.record_base_url(ctx, settings.base_url)  # for the links other commands print
    try:
        admin.list_accounts(ctx, DEMO_TENANT, limit=1)
    except NotFound:
        admin.create_tenant(ctx, DEMO_TENANT, "Demo Hospital", actor="dev")
    try:
        admin.get_connection(ctx, DEMO_CONNECTION)
    except NotFound:
        admin.add_mock_connection(ctx, tenant=DEMO_TENANT, slug=DEMO_CONNECTION,
                                  mapping=demo_mapping(), mapping_source="demo-mapping.yaml",
                                  actor="dev")
    kiosk = enrolment_url(settings.base_url, devices.demo_device(ctx, DEMO_TENANT))
    typer.echo(
        "\n"
        f"  jitprov dev is running at {settings.base_url}/\n"
        f"  Shared-device demo (passkeys, switch user): open {kiosk}\n"
        f"  Admin console: {console.create_bootstrap_link(ctx, settings.base_url).url}\n"
        f"  Open it, click 'Sign in with {DEMO_CONNECTION}', pick a demo user and sign in:\n"
        "  the account is created Just-in-Time, with roles from the demo mapping rules.\n"
        f"  Database: {db.safe_url}   Secret key: {settings.key_source}   (Ctrl+C to stop)\n")
    logs.configure(settings.ops.log_format, settings.ops.log_level)  # the server's, from here
    stop = threading.Event()  # the jobs `serve` runs, so webhooks and expiry work here too
    purge.run_periodically(ctx, timedelta(minutes=15), stop)
    webhooks.run_periodically(ctx, timedelta(seconds=1), stop)
    entitlement_jobs.run_periodically(ctx, timedelta(seconds=1), stop)  # large SCIM changes
    try:
        # as `serve` does: a benchmark's nodes run `jitprov dev`
        uvicorn.run(serving_app(settings, ctx), host=host, port=port, workers=1,
                    log_level="warning", access_log=False, proxy_headers=False,
                    log_config=None)
    finally:
        stop.set()
