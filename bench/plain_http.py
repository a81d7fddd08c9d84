"""An HTTP/1.1 client on one kept-alive plain socket, for load generators that share the
cores with the server they measure.

httpx costs the load generator several times what jitprov spends on a short answer (a
forward-auth subrequest, a login's redirect), so where a benchmark counts throughput on this
machine's two cores, the generator's own CPU takes the server's share. This client writes the
request in one ``sendall`` and reads the answer to its ``Content-Length``: no cookie jar, no
redirects, no chunked bodies (jitprov's answers to these requests carry a length), which is
all a proxy's subrequest or a scripted browser needs.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


class PlainHTTPError(RuntimeError):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    headers: list[tuple[str, str]]  # names in lower case, in the order sent
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k == name), None)

    def cookies(self) -> dict[str, str]:
        """name -> value of the answer's Set-Cookie headers (attributes dropped)."""
        found = {}
        for key, value in self.headers:
            if key == "set-cookie":
                name, _, rest = value.partition("=")
                found[name.strip()] = rest.split(";", 1)[0].strip().strip('"')
        return found


class KeptAlive:
    """One connection to ``base`` (``http://host:port``), opened at the first request and
    again after the server closes it."""

    def __init__(self, base: str, timeout: float = 30.0) -> None:
        parts = urlsplit(base)
        self.address = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.host = parts.netloc
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def request(self, method: str, target: str, headers: dict[str, str] | None = None,
                form: dict[str, str] | None = None) -> Answer:
        body = urlencode(form).encode() if form is not None else b""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if form is not None:
            lines += ["Content-Type: application/x-www-form-urlencoded",
                      f"Content-Length: {len(body)}"]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=self.timeout)
        try:
            self.sock.sendall(data)
            return self._read()
        except (OSError, PlainHTTPError):
            self.close()  # the next request opens a new connection
            raise
        except ValueError as exc:  # a status line or length that does not parse
            self.close()
            raise PlainHTTPError(f"an answer that does not parse: {exc}") from exc

    def _read(self) -> Answer:
        assert self.sock is not None
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PlainHTTPError("the server closed the connection")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = [(k.strip().lower(), v.strip())
                   for k, _, v in (line.partition(":") for line in header_lines)]
        answer_headers = dict(headers)
        if "chunked" in answer_headers.get("transfer-encoding", ""):
            raise PlainHTTPError("a chunked answer (this client reads a Content-Length)")
        length = int(answer_headers.get("content-length", "0"))
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise PlainHTTPError("the server closed the connection mid-answer")
            body += chunk
        if answer_headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(int(status_line.split(" ", 2)[1]), headers, body)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None
