"""The OIDC back-channel code exchange, client side: ``exchange_code`` through the server's own
client (the outbound guard, its loopback address allowed as ``JITPROV_OUTBOUND_ALLOW`` would)
against a token endpoint served by another process on loopback (HTTP/1.1 keep-alive, a 1.2 KB
ID token in the answer), with ``client_secret_basic`` and ``private_key_jwt`` (ES256 client
assertion), from a thread as ``check_oidc_callback`` sends it; and awaited on an event loop
(uvloop, as under ``serve``) through the client's async twin, as the callback route sends it,
its connections on asyncio's streams (``jitprov.services.loop_streams``), interleaved in
blocks with the same exchange on anyio's streams (httpcore's default network backend): the
difference is what that layer costs, measured alike on a machine whose speed drifts.
CPU is this process's (the client's) per exchange; the provider's is not counted.
Budget: <= 1.5 ms.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpcore
import httpx
import uvloop
from joserfc.jwk import ECKey

from jitprov.protocols.oidc import OidcConfig, ProviderMetadata
from jitprov.protocols.oidc.flow import exchange_code, read_token_response, token_request
from jitprov.protocols.oidc.provider import send_async
from jitprov.services.loop_streams import LoopBackend
from jitprov.services.outbound import async_twin, guarded_client, policy_from

ANSWER = json.dumps({"access_token": "a" * 43, "token_type": "Bearer", "expires_in": 300,
                     "id_token": "eyJ" + "x" * 1200}).encode()


class _TokenEndpoint(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # one answer, no 40 ms delayed-ACK stall

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(ANSWER)))
        self.end_headers()
        self.wfile.write(ANSWER)

    def log_message(self, *args: Any) -> None:
        pass


def _serve(port: int) -> None:
    ThreadingHTTPServer(("127.0.0.1", port), _TokenEndpoint).serve_forever()


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    del postgres_url
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = multiprocessing.get_context("spawn").Process(target=_serve, args=(port,),
                                                          daemon=True)
    server.start()
    issuer = f"http://127.0.0.1:{port}"
    metadata = ProviderMetadata(issuer=issuer, authorization_endpoint=f"{issuer}/a",
                                token_endpoint=f"{issuer}/token", jwks_uri=f"{issuer}/jwks",
                                userinfo_endpoint=None, token_endpoint_auth_methods=(),
                                code_challenge_methods=("S256",))
    key = ECKey.generate_key("P-256", parameters={"kid": "c1"}, private=True)
    rows: list[dict[str, object]] = []
    try:
        with guarded_client(policy_from(["127.0.0.1/32"], allow_private=False)) as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    http.post(f"{issuer}/token")
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            rounds = min(ops, 2000)
            for method in ("client_secret_basic", "private_key_jwt"):
                config = OidcConfig.parse({"issuer": issuer, "client_id": "bench",
                                           "token_auth_method": method})

                def exchange(n: int, config: OidcConfig = config) -> None:
                    exchange_code(http, metadata, config, code=f"code-{n}",
                                  code_verifier="v" * 43, redirect_uri="https://rp/cb",
                                  client_secret="s3cret", private_key=key)

                rows.append(_row(f"code exchange, client side ({method})", rounds,
                                 _timed_sync(exchange, rounds)))
            config = OidcConfig.parse({"issuer": issuer, "client_id": "bench"})
            with guarded_client(policy_from(["127.0.0.1/32"], allow_private=False)) as other:
                twins = {"asyncio": async_twin(http), "anyio": async_twin(other)}

                def awaited(name: str) -> Callable[[int], Awaitable[None]]:
                    twin = twins[name]
                    assert twin is not None

                    async def exchange(n: int) -> None:
                        request = token_request(twin, metadata, config, code=f"code-{n}",
                                                code_verifier="v" * 43,
                                                redirect_uri="https://rp/cb",
                                                client_secret="s3cret")
                        read_token_response(*await send_async(twin, request,
                                                              what="token endpoint"))
                    return exchange

                async def both() -> dict[str, Timing]:
                    # this loop's pools of the second client, made now, connect as before
                    # the guard's own backend (jitprov.services.loop_streams): through
                    # httpcore's default, anyio's streams
                    for pool in other._transport._async_pools():  # type: ignore[attr-defined]
                        pinning = pool._pool._network_backend
                        assert isinstance(pinning._inner, LoopBackend)  # what is replaced
                        pinning._inner = httpcore.AnyIOBackend()
                    try:
                        return await _interleaved({name: awaited(name) for name in twins},
                                                  rounds)
                    finally:
                        for twin in twins.values():
                            assert twin is not None
                            await twin.aclose()

                timings = uvloop.run(both())
            rows.append(_row("code exchange, client side, awaited on the event loop "
                             "(client_secret_basic)", rounds, timings["asyncio"]))
            rows.append(_row("code exchange, client side, awaited on the event loop, "
                             "connections on anyio's streams (httpcore's default backend; "
                             "the two rows interleaved in blocks of 100)", rounds,
                             timings["anyio"]))
    finally:
        server.terminate()
        server.join(5)
    return rows


Timing = tuple[float, float, list[float]]  # CPU seconds, wall seconds, latencies


def _timed_sync(fn: Callable[[int], None], rounds: int) -> Timing:
    latencies: list[float] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for n in range(rounds):
        t0 = time.perf_counter()
        fn(n)
        latencies.append(time.perf_counter() - t0)
    return time.process_time() - cpu0, time.perf_counter() - wall0, latencies


async def _interleaved(fns: dict[str, Callable[[int], Awaitable[None]]],
                       rounds: int, block: int = 100) -> dict[str, Timing]:
    """Each of ``fns`` ``rounds`` times, in blocks whose order turns each time (A B, B A,
    A B...), so a machine whose speed drifts during the run weighs on each alike."""
    for fn in fns.values():
        for n in range(20):  # the loop's own connection opened, outside the window
            await fn(-n - 1)
    cpu = dict.fromkeys(fns, 0.0)
    wall = dict.fromkeys(fns, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for start in range(0, rounds, block):
        for name in order:
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for n in range(start, min(start + block, rounds)):
                t0 = time.perf_counter()
                await fns[name](n)
                latencies[name].append(time.perf_counter() - t0)
            cpu[name] += time.process_time() - cpu0
            wall[name] += time.perf_counter() - wall0
        order.reverse()
    return {name: (cpu[name], wall[name], latencies[name]) for name in fns}


def _row(scenario: str, rounds: int, timing: Timing) -> dict[str, object]:
    cpu, wall, latencies = timing
    latencies.sort()
    return {"scenario": scenario, "db": "-", "clients": 1, "ops": rounds,
            "ops_per_s": rounds / wall, "cpu_ms_per_op": cpu / rounds * 1000,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": latencies[int(rounds * 0.99) - 1] * 1000}


if __name__ == "__main__":
    for row in run(ops=2000, postgres_url=""):
        print(row)
