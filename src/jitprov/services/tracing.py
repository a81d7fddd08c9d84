"""jitprov's own trace spans (a login's provisioning, each SCIM operation), when tracing is on.

Off unless ``web.tracing.install`` activated it (OpenTelemetry configured through the standard
``OTEL_*`` variables, with the ``jitprov[otel]`` extra): then :func:`span` opens a span of the
``jitprov`` tracer; otherwise it costs one attribute read. Attributes are identifiers only
(connection, tenant, resource, operation, outcome): never claims, emails or tokens.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

_tracer: Any = None  # an opentelemetry Tracer while tracing is on


def activate(tracer: Any) -> None:
    """Turn jitprov's spans on (``tracer``) or off (None)."""
    global _tracer
    _tracer = tracer


@contextmanager
def span(name: str, **attributes: str | int | bool) -> Iterator[Any]:
    """A span named ``name`` around the block, or nothing when tracing is off. Yields the span
    (or None) so the block can add an outcome."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current
