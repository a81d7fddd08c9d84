"""httpcore's network backend on asyncio's own streams, for the event loop's outbound pools.

httpx's async client reaches the socket through httpcore's network backend, which under
asyncio is anyio's: every read and write opens an anyio cancel scope (``fail_after``: a loop
timer, the current task looked up), maps errors through a context manager, and asks anyio
which backend runs, and a pooled connection's liveness check goes through anyio's typed
attributes. Measured here on an OIDC code exchange awaited on the loop (a keep-alive
connection on loopback), that costs about an eighth of the exchange's client CPU
(``bench.code_exchange``: these streams 0.80-0.92x anyio's, interleaved).
httpcore documents the network backend as its extension point: this one keeps httpcore and
h11 for HTTP and the standard library's ``ssl`` for TLS, and takes the bytes from asyncio's
``StreamReader``/``StreamWriter`` with plain ``asyncio.timeout`` deadlines. A write waits
only when the transport's buffer is above its high-water mark; a read returns what is
buffered at once. Errors map to httpcore's as anyio's backend maps them (a timeout to the
``*Timeout`` of its step, a socket or TLS error to ``ConnectError``/``ReadError``/
``WriteError``), so httpx raises what it raised before.

The outbound guard (:mod:`jitprov.services.outbound`) puts it under its pinning backend:
where a connection goes is still decided there, and only there.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
from httpcore._utils import is_socket_readable  # the check anyio's backend makes too


def _ran_out(exc: BaseException) -> bool:
    """Whether an error is a deadline of ours (``asyncio.timeout``), not the kernel's
    ``ETIMEDOUT`` on a dead connection (an OSError too, which anyio's backend reports as the
    step's error, not its timeout)."""
    return isinstance(exc, TimeoutError) and exc.errno is None


def _step_failed(exc: OSError | RuntimeError, transport: asyncio.BaseTransport,
                 timed_out: tuple[type[Exception], str], failed: type[Exception],
                 ) -> Exception | None:
    """The httpcore error a read or write failure becomes, as anyio's backend maps it: our
    deadline its step's timeout, a socket error the step's error, and uvloop's RuntimeError
    on a handle already closed too; None for any other RuntimeError (not ours to map)."""
    if _ran_out(exc):
        kind, text = timed_out
        return kind(text)
    if isinstance(exc, RuntimeError) and not transport.is_closing():
        return None
    return failed(str(exc) or type(exc).__name__)


_READ_TIMEOUT = (httpcore.ReadTimeout, "the answer did not come in time")
_WRITE_TIMEOUT = (httpcore.WriteTimeout, "the request could not be sent in time")
#: httpcore's names for what it asks of a stream -> asyncio's transport's names
_TRANSPORT_INFO = {"ssl_object": "ssl_object", "client_addr": "sockname",
                   "server_addr": "peername", "socket": "socket"}


class LoopStream(httpcore.AsyncNetworkStream):
    """One connection of the running loop, as httpcore reads and writes it.

    Unlike anyio's streams, asyncio's reader keeps reading while the connection is idle:
    what a server sends unasked (a ``408`` before it hangs up, the end of the stream) lands
    in the reader's buffer rather than waiting on the socket, so :meth:`get_extra_info`'s
    liveness check looks there too. After :meth:`start_tls` the reader still pauses and
    resumes the TCP transport under the TLS one for its flow control (CPython gh-114921):
    it holds the bytes back all the same."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self._reader.read(max_bytes)
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)
        except (OSError, RuntimeError) as exc:
            mapped = _step_failed(exc, self._writer.transport, _READ_TIMEOUT, httpcore.ReadError)
            if mapped is None:
                raise
            raise mapped from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        writer = self._writer
        try:
            writer.write(buffer)
            if writer.transport.get_write_buffer_size() == 0 or timeout is None:
                await writer.drain()  # sent already: raises only if the connection is lost
            else:
                async with asyncio.timeout(timeout):
                    await writer.drain()
        except (OSError, RuntimeError) as exc:
            mapped = _step_failed(exc, writer.transport, _WRITE_TIMEOUT, httpcore.WriteError)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        # at once, unsent bytes dropped and no TLS close_notify, as anyio's backend closes
        # for httpcore (``standard_compatible=False``): httpcore closes a connection it has
        # no more use for, and a server that stopped reading would keep it open
        self._writer.transport.abort()
        await asyncio.sleep(0)  # the transport closes its socket in the loop's next pass

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self._writer.start_tls(ssl_context, server_hostname=server_hostname,
                                             ssl_handshake_timeout=timeout or None)
        except BaseException as exc:
            self._writer.transport.abort()
            if _ran_out(exc):
                raise httpcore.ConnectTimeout("the TLS handshake did not finish in time") \
                    from exc
            if isinstance(exc, OSError):  # ssl.SSLError among them: the certificate, say
                raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
            raise
        return self

    def get_extra_info(self, info: str) -> Any:
        transport = self._writer.transport
        if info == "is_readable":  # a kept-alive connection the server spoke on or closed
            reader = self._reader
            held = getattr(reader, "_buffer", None)  # no public view of what arrived idle
            if held or reader.at_eof() or reader.exception() is not None \
                    or transport.is_closing():
                return True
            sock = transport.get_extra_info("socket")
            return sock is None or is_socket_readable(sock)
        name = _TRANSPORT_INFO.get(info)
        return None if name is None else transport.get_extra_info(name)


class LoopBackend(httpcore.AsyncNetworkBackend):
    """Opens :class:`LoopStream` connections on the running loop (TCP only: the outbound
    guard refuses Unix sockets before they get here)."""

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=(local_address, 0) if local_address else None)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout("the connection was not made in time") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = writer.transport.get_extra_info("socket")
        for option in socket_options or ():  # asyncio already sets TCP_NODELAY
            sock.setsockopt(*option)
        return LoopStream(reader, writer)

    async def connect_unix_socket(
            self, path: str, timeout: float | None = None,
            socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("connections to Unix sockets are not made")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
