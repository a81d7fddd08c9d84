"""Prometheus metrics (served at ``/metrics``, with the metrics token or an admin token).

One process: the metrics live in :data:`REGISTRY`. ``jitprov serve --workers N`` runs N worker
processes and a supervisor (where the background jobs run, the webhook deliveries among them);
it calls :func:`use_multiprocess_dir` before it starts them, so every process writes its values
to files in one directory (prometheus_client's multiprocess mode) and any worker's ``/metrics``
adds them all up: counters stay monotonic whichever worker is scraped, and the jobs' counters
are counted where the jobs run. Prometheus sums the nodes.

Callers use the metrics as attributes of this module (``metrics.LOGINS.labels(...)``), never
imported by name: :func:`use_multiprocess_dir` builds them anew.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

_MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
_FAST = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
_HTTP = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_LAG = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REGISTRY: CollectorRegistry
LOGINS: Counter
DECISION_SECONDS: Histogram
REVOCATION_SECONDS: Histogram
SESSIONS_REVOKED: Counter
WEBHOOK_ATTEMPTS: Counter
WEBHOOK_BACKLOG: Gauge
HTTP_REQUESTS: Counter
HTTP_SECONDS: Histogram
SCIM_OPERATIONS: Counter
RATE_LIMITED: Counter
LOOP_LAG: Histogram


def _define() -> None:
    """(Re)create every metric in a new :data:`REGISTRY`, with the value class in force."""
    global REGISTRY, LOGINS, DECISION_SECONDS, REVOCATION_SECONDS, SESSIONS_REVOKED
    global WEBHOOK_ATTEMPTS, WEBHOOK_BACKLOG, HTTP_REQUESTS, HTTP_SECONDS, SCIM_OPERATIONS
    global RATE_LIMITED, LOOP_LAG
    REGISTRY = registry = CollectorRegistry(auto_describe=True)
    LOGINS = Counter("jitprov_logins", "Logins by outcome (the decision, or the failure "
                     "code)", ["outcome"], registry=registry)
    DECISION_SECONDS = Histogram(
        "jitprov_login_decision_seconds", "Time of provision_on_login (map, decide, write, "
        "commit)", buckets=_FAST, registry=registry)
    REVOCATION_SECONDS = Histogram(
        "jitprov_revocation_seconds", "From a deactivation or suspension request to its "
        "commit (every session of the account revoked)", buckets=_FAST, registry=registry)
    SESSIONS_REVOKED = Counter("jitprov_sessions_revoked", "Sessions revoked by "
                               "deactivation, suspension or the dormant sweep",
                               registry=registry)
    WEBHOOK_ATTEMPTS = Counter("jitprov_webhook_attempts", "Webhook delivery attempts by "
                               "result", ["result"], registry=registry)
    WEBHOOK_BACKLOG = Gauge("jitprov_webhook_backlog", "Webhook deliveries waiting (pending, "
                            "retrying) plus events not yet fanned out, after the last "
                            "worker pass", registry=registry, multiprocess_mode="mostrecent")
    HTTP_REQUESTS = Counter("jitprov_http_requests", "HTTP requests answered, by method, "
                            "route template and status", ["method", "route", "status"],
                            registry=registry)
    HTTP_SECONDS = Histogram("jitprov_http_request_duration_seconds", "Time to answer an "
                             "HTTP request, by method and route template",
                             ["method", "route"], buckets=_HTTP, registry=registry)
    SCIM_OPERATIONS = Counter("jitprov_scim_operations", "SCIM operations by resource "
                              "(User, Group, Bulk...), operation (create, replace, patch, "
                              "delete, get, list, search) and outcome (ok, or the error's "
                              "scimType or status)", ["resource", "operation", "outcome"],
                              registry=registry)
    RATE_LIMITED = Counter("jitprov_rate_limited", "Requests refused with 429 by rate limit",
                           ["limit"], registry=registry)
    LOOP_LAG = Histogram("jitprov_event_loop_lag_seconds", "How late a worker's event loop "
                         "ran a timer set every 0.5 s: the time every request in flight "
                         "waited for a stall (a garbage collection, CPU starvation, a blocking "
                         "call)", buckets=_LAG, registry=registry)


_define()


def multiprocess_dir() -> str | None:
    """The directory of multiprocess mode, when this process is in it."""
    return os.environ.get(_MULTIPROC_VARIABLE) or None


def use_multiprocess_dir(directory: str) -> None:
    """Enter multiprocess mode: this process (and every process started after, which
    inherits the environment) writes its metric values to files in ``directory``."""
    os.environ[_MULTIPROC_VARIABLE] = directory
    # the value class is chosen when prometheus_client is imported; this process is past it
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    _define()


def process_exiting() -> None:
    """Bookkeeping when a worker stops: its live gauges are dropped (its counters stay, so
    totals never go down)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(  # type: ignore[no-untyped-call]
            os.getpid(), directory)


def exposition() -> bytes:
    """The text format Prometheus scrapes: this process's metrics, or in multiprocess mode
    those of every process of the server."""
    if multiprocess_dir() is None:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
