"""Structured logs: one line per event, JSON (``serve``) or readable (``dev``).

:func:`configure` is called once per process by ``jitprov serve`` / ``jitprov dev`` and by each
worker of ``serve --workers N``; it sends structlog's events and the standard library's records
(uvicorn's, ``logging.getLogger("jitprov...")``) through the same renderer to stderr. Before
that (tests, the CLI) structlog's events go to the standard library's logging, which drops
``INFO`` unless a handler is set.

What is never logged: secrets, tokens, codes, assertions, claims and query strings. The web
layer logs paths without their query string and names no value it did not choose; as a last
guard, :func:`redact` replaces the value of any field whose name says it holds a secret.

:func:`request_fields` is the mutable set of fields of the request being served (its tenant and
connection, when a service learns them); the request log line reads it when the answer is sent.
"""

from __future__ import annotations

import atexit
import io
import itertools
import json
import logging
import operator
import os
import stat
import sys
import threading
import time
from collections.abc import MutableMapping
from contextvars import ContextVar
from functools import lru_cache
from typing import Any

import structlog

from jitprov.core.json_text import compact

#: field names whose value is replaced by ``[redacted]`` wherever they appear
SECRET_FIELDS = frozenset({
    "token", "secret", "password", "code", "assertion", "authorization", "cookie", "state",
    "claims", "samlresponse", "saml_response", "relaystate", "id_token", "access_token",
    "refresh_token", "client_secret", "logout_token", "query", "query_string", "nonce",
})
_SECRET_SUFFIXES = ("_token", "_secret", "_password", "_code", "_assertion")
_HANDLER_NAME = "jitprov"
#: held while a line is written to stderr, by structlog's writer and by the handler alike
_WRITE_LOCK = threading.RLock()

_request: ContextVar[dict[str, object] | None] = ContextVar("jitprov_request_fields",
                                                            default=None)


@lru_cache(maxsize=4096)
def _is_secret(key: str) -> bool:
    lowered = key.lower()
    return lowered in SECRET_FIELDS or lowered.endswith(_SECRET_SUFFIXES)


def redact(_logger: object, _method: str, event: MutableMapping[str, Any],
           ) -> MutableMapping[str, Any]:
    """structlog processor: the value of a field named like a secret is never written."""
    for key in [k for k in event if _is_secret(k)]:
        event[key] = "[redacted]"
    return event


def _drop_color_message(_logger: object, _method: str, event: MutableMapping[str, Any],
                        ) -> MutableMapping[str, Any]:
    """uvicorn passes a copy of its message with terminal colour codes: not for a log file."""
    event.pop("color_message", None)
    return event


_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
]


def reset() -> None:
    """Undo :func:`configure` for structlog's events: through the standard library again, as
    at import (where a test's log capture reads them)."""
    _set_batching(False)
    _route_to_stdlib()


def _set_batching(on: bool) -> None:
    global _batches, _made_batches
    if _batches is not None:
        _batches.flush()
    if on and _made_batches is None:
        _made_batches = _Batches()  # one per process: it registers an exit hook
    _batches = _made_batches if on else None


def _route_to_stdlib() -> None:
    structlog.configure(
        processors=[*_SHARED, redact, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True)


def _write_line(text: str, *, urgent: bool = True) -> None:
    """Write ``text`` (one or more whole lines) to whatever ``sys.stderr`` is now, in one write
    under the lock; where lines go out in batches (:class:`_Batches`), a line that is not
    ``urgent`` joins the next batch, and an urgent one goes out at once, after the lines
    waiting before it. A stream that fails (a broken pipe when the log reader went away, a
    closed or full non-blocking one, no stream at all) costs the line and nothing else:
    logging never fails the code that logs (a login already committed must still answer),
    as the standard library's ``Handler.handleError`` makes sure, and the failure is not
    reported on the stream that just failed."""
    batches = _batches
    if batches is not None and not urgent and batches.add(text):
        return
    with _WRITE_LOCK:
        if batches is not None:
            batches.flush()
        _write_now(text, sys.stderr)


def _write_now(text: str, stream: Any) -> None:
    """One write to ``stream`` and its flush (the caller holds ``_WRITE_LOCK``). A line logged
    while this thread is in the middle of a write (by a signal handler, which Python runs
    inside a system call it interrupted) is written after that write, not into it."""
    deferred: list[tuple[Any, str]] | None = getattr(_writing, "deferred", None)
    if deferred is not None:
        deferred.append((stream, text))
        return
    _writing.deferred = deferred = [(stream, text)]
    try:
        while deferred:
            target, line = deferred.pop(0)
            try:
                _write_all(target, line)
            except Exception:  # noqa: S110 - dropping the line is the point (_write_line)
                pass
    finally:
        _writing.deferred = None


def _write_all(stream: Any, text: str) -> None:
    """``text`` to ``stream``, all of it. Under ``PYTHONUNBUFFERED`` (common in container
    images) stderr's text layer sits on the raw file and ignores a short write: a write to a
    pipe that a signal interrupts after part of it returns that part's length, and the rest
    of a batch was lost. Over such a raw file the bytes go to it until all are taken; a
    buffered binary layer takes them all by itself."""
    binary = getattr(stream, "buffer", None)
    if not isinstance(binary, io.RawIOBase):
        stream.write(text)
        stream.flush()
        return
    stream.flush()  # what the text layer holds goes first
    rest = memoryview(text.encode(stream.encoding or "utf-8", stream.errors or "strict"))
    while rest:
        taken = binary.write(rest)
        if taken is None:  # a non-blocking stream that is full
            raise BlockingIOError("stderr is full")
        rest = rest[taken:]
    binary.flush()


#: per thread, while it writes: the lines a signal handler logged meanwhile
_writing = threading.local()


#: how long a line may wait for the lines after it, where they go out in batches
BATCH_WINDOW = 0.005
#: lines that may wait at once; past it the caller writes them (a stalled log reader slows
#: the callers, as an unbatched stream does, rather than filling memory)
MAX_WAITING = 1000


class _Batches:
    """Lines for a pipe or a socket (a container runtime's, journald's), written together a
    few milliseconds late. Waking a pipe's sleeping reader costs the writer CPU at every
    write (9-25 µs a line here, ``bench/log_lines.py``), and a busy server logs a line per
    request. The first line of a batch wakes a writer thread, which waits
    :data:`BATCH_WINDOW`, then writes whatever came meanwhile in one write. Each line keeps
    the stream that was ``sys.stderr`` when it was logged. A warning or worse never waits
    (:func:`_write_line`); past :data:`MAX_WAITING` lines, or without a writer thread, the
    caller writes; :func:`flush` at the app's shutdown and an exit hook write what waits. A
    process killed outright loses at most the last window's lines."""

    def __init__(self) -> None:
        self._pending: list[tuple[Any, str]] = []
        self._lock = threading.RLock()  # a signal handler may log while add() holds it
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        atexit.register(self.flush)
        os.register_at_fork(after_in_child=self._forked)

    def add(self, text: str) -> bool:
        """Keep ``text`` for the next batch; False when the caller must write now."""
        with self._lock:
            if len(self._pending) >= MAX_WAITING:
                return False
            self._pending.append((sys.stderr, text))
            if len(self._pending) > 1:
                return True  # the batch's first line already woke the writer
            running = self._thread is not None and self._thread.is_alive()
        if not running and not self._start():
            return False
        self._due.set()
        return True

    def _start(self) -> bool:
        thread = threading.Thread(target=self._run, daemon=True, name="jitprov-log-writer")
        try:
            thread.start()
        except RuntimeError:  # no new threads (interpreter shutting down)
            return False
        self._thread = thread
        return True

    def flush(self) -> None:
        """Write what waits, now, each line to the stream it was logged for."""
        with _WRITE_LOCK:
            with self._lock:
                pending, self._pending = self._pending, []
            for stream, lines in itertools.groupby(pending, key=operator.itemgetter(0)):
                _write_now("".join(text for _, text in lines), stream)

    def _run(self) -> None:
        while True:
            self._due.wait()
            self._due.clear()
            time.sleep(BATCH_WINDOW)
            self.flush()

    def _forked(self) -> None:
        # a child starts with no writer thread, with locks no thread of its own holds, and
        # without the parent's waiting lines (the parent writes those)
        self._lock = threading.RLock()
        self._due = threading.Event()
        self._thread = None
        self._pending = []


def flush() -> None:
    """Write the log lines waiting for their batch (the app calls it at shutdown: uvicorn
    ends a worker by re-raising the stop signal, and no exit hook runs then)."""
    if _made_batches is not None:
        _made_batches.flush()


#: where non-urgent lines go while batching is on (:func:`configure`)
_batches: _Batches | None = None
_made_batches: _Batches | None = None


def _batching(stream: object) -> bool:
    """Whether lines to ``stream`` go out in batches: it is a pipe or a socket."""
    try:
        mode = os.fstat(stream.fileno()).st_mode  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a line is written, not when the handler was
    made: a command run in-process (tests, tools) may swap the stream and close the old one.
    A line the stream does not take is dropped (:func:`_write_line`); a record that cannot be
    formatted is reported as the standard library does, unless that fails too."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except RecursionError:  # as the standard library's handlers
            raise
        except Exception:
            self.handleError(record)
            return
        _write_line(line)  # rare (uvicorn's start and stop lines...): at once

    def handleError(self, record: logging.LogRecord) -> None:
        # the standard library's report catches only OSError: a closed stream raises
        # ValueError out of it
        try:
            super().handleError(record)
        except Exception:  # noqa: S110 - the report is written where the failure was
            pass


class _LineWriter:
    """structlog's logger once :func:`configure` ran: writes each rendered line to whatever
    ``sys.stderr`` is at that moment, in one write under a lock (lines of several threads never
    interleave, with each other or with the handler's); a line the stream does not take is
    dropped, never raised to the caller (:func:`_write_line`). Named like the standard library's
    logger of the same name, whose level decides what is written: the same levels as the
    standard library's lines, without building a ``LogRecord`` and formatting it again for
    each line."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name or "root"
        self.stdlib = logging.getLogger(name)

    def write(self, line: str) -> None:
        _write_line(line + "\n")

    def write_later(self, line: str) -> None:
        _write_line(line + "\n", urgent=False)

    warning = error = critical = msg = write
    debug = info = write_later


class _LevelledLogger(structlog.BoundLoggerBase):
    """The methods jitprov's structlog loggers offer (``debug`` to ``critical``,
    ``exception``), each a no-op below the standard library's level for the logger's name
    (``logging.getLogger(name).isEnabledFor``, cached by the standard library and reset when a
    level changes)."""

    _logger: _LineWriter

    def _emit(self, method: str, level: int, event: str | None, args: tuple[Any, ...],
              kw: dict[str, Any]) -> Any:
        if not self._logger.stdlib.isEnabledFor(level):
            return None
        if args:  # as structlog's stdlib logger keeps them
            kw["positional_args"] = args
        return self._proxy_to_logger(method, event, **kw)

    def debug(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit("debug", logging.DEBUG, event, args, kw)

    def info(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit("info", logging.INFO, event, args, kw)

    def warning(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit("warning", logging.WARNING, event, args, kw)

    warn = warning

    def error(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit("error", logging.ERROR, event, args, kw)

    def critical(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        return self._emit("critical", logging.CRITICAL, event, args, kw)

    def exception(self, event: str | None = None, *args: Any, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._emit("error", logging.ERROR, event, args, kw)

    def isEnabledFor(self, level: int) -> bool:
        return self._logger.stdlib.isEnabledFor(level)


def json_line(event: Any, **dumps_kw: Any) -> str:
    """A JSON log line, compact (no space after ``:`` or ``,``) and ASCII: orjson's text
    where it means what ``json.dumps``'s would (:func:`jitprov.core.json_text.compact`),
    else ``json.dumps``'s with the same separators and structlog's fallback (``dumps_kw``: a
    value JSON has no type for is written as its ``repr``, as before). Every line has the
    same shape, whichever wrote it: a filter on ``"event":"request"`` finds them all. The
    request line of every request is written this way (orjson: 7 % of a ``GET /healthz``'s
    instructions in process)."""
    text = compact(event)
    return json.dumps(event, separators=_COMPACT, **dumps_kw) if text is None else text


_COMPACT = (",", ":")


def configure(log_format: str, level: str) -> None:
    """Write every log line of this process to stderr as JSON (``log_format="json"``) or as
    readable text (``"console"``), at ``level`` and above. Calling it again replaces the
    previous setup (no line is written twice).

    structlog's events (``get_logger``) are rendered by structlog's own chain and written
    straight to stderr (:class:`_LineWriter`); the standard library's records (uvicorn's,
    ``logging.getLogger(...)``) go through a handler that renders them with the same
    processors and renderer, so both read alike. A logger already used before this call
    keeps writing through the standard library, in the same format."""
    _set_batching(_batching(sys.stderr))
    renderer: Any = (structlog.processors.JSONRenderer(serializer=json_line)
                     if log_format == "json"
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    exceptions: Any = (structlog.processors.format_exc_info if log_format == "json"
                       else structlog.processors.StackInfoRenderer())
    # not cached on first use (~1.5 µs a line): a later configure() or reset() reaches every
    # logger, not only those not yet used
    structlog.configure(
        processors=[*_SHARED, redact, exceptions, renderer],
        logger_factory=_LineWriter, wrapper_class=_LevelledLogger,
        cache_logger_on_first_use=False)
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_SHARED, structlog.stdlib.ExtraAdder(), _drop_color_message,
                           redact],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    exceptions, renderer])
    handler = _StderrHandler()
    handler.lock = _WRITE_LOCK
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # migrations announce each step at INFO: only their warnings, unless DEBUG is asked for;
    # httpx and httpcore log every outgoing URL at INFO (a webhook's or an IdP's URL may hold
    # a secret in its query string): their warnings only, whatever the level
    logging.getLogger("alembic").setLevel(level if level == "DEBUG" else "WARNING")
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel("WARNING")
    for name in ("uvicorn", "uvicorn.error"):  # uvicorn's own lines, in the same format
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True


def get_logger(name: str) -> Any:
    """A structlog logger named ``name`` (``jitprov.login``, ``jitprov.request``...)."""
    return structlog.stdlib.get_logger(name)


def start_request(fields: dict[str, object]) -> object:
    """Make ``fields`` the current request's (returns the token :func:`end_request` takes)."""
    return _request.set(fields)


def end_request(token: object) -> None:
    _request.reset(token)  # type: ignore[arg-type]


def annotate(**fields: object) -> None:
    """Add ``fields`` (``tenant=``, ``connection=``) to the log line of the request being
    served, if any; a no-op outside a request (CLI, jobs)."""
    current = _request.get()
    if current is not None:
        current.update({k: v for k, v in fields.items() if v is not None})


_route_to_stdlib()
