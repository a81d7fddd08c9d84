"""Prometheus metrics of this process (served at ``/metrics``, admin token required).

Counters and histograms are per process; Prometheus sums the nodes.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

LOGINS = Counter("jitprov_logins", "Logins by connection kind and outcome (the decision, or "
                 "the failure code)", ["outcome"], registry=REGISTRY)
DECISION_SECONDS = Histogram(
    "jitprov_login_decision_seconds", "Time of provision_on_login (map, decide, write, commit)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=REGISTRY)
REVOCATION_SECONDS = Histogram(
    "jitprov_revocation_seconds", "From a deactivation or suspension request to its commit "
    "(every session of the account revoked)",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0), registry=REGISTRY)
SESSIONS_REVOKED = Counter("jitprov_sessions_revoked", "Sessions revoked by deactivation, "
                           "suspension or the dormant sweep", registry=REGISTRY)
WEBHOOK_ATTEMPTS = Counter("jitprov_webhook_attempts", "Webhook delivery attempts by result",
                           ["result"], registry=REGISTRY)
WEBHOOK_BACKLOG = Gauge("jitprov_webhook_backlog", "Webhook deliveries waiting (pending, "
                        "retrying) plus events not yet fanned out, after the last worker pass",
                        registry=REGISTRY)


def exposition() -> bytes:
    """The text format Prometheus scrapes."""
    return generate_latest(REGISTRY)
