"""Webhook throughput: outbox events fanned out, signed and POSTed to a local receiver by one
worker, SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.provision import databases
from jitprov.services import admin, webhooks
from jitprov.services.context import ServiceContext
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database
from jitprov.store.unit_of_work import UnitOfWork


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver behind a proxy would

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(204)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    rows: list[dict[str, object]] = []
    events = min(ops, 1000)
    for db_name, db_url, cleanup in databases(postgres_url):
        db = Database.connect(db_url, pool_size=2)
        db.upgrade()
        ctx = ServiceContext(db=db, secretbox=SecretBox("bench"), webhook_allow_private=True)
        tenant = admin.create_tenant(ctx, "bench")
        webhooks.add_endpoint(ctx, "bench", url, ["*"])
        with UnitOfWork(ctx.db) as uow:
            uow.outbox.add_many(tenant.id, [("account.updated", {"n": n})
                                            for n in range(events)], ctx.clock())
            uow.commit()
        delivered = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while delivered < events:
            delivered += webhooks.deliver_due(ctx, limit=webhooks.BATCH).delivered
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        rows.append({"scenario": "webhook deliveries, one worker", "db": db_name, "clients": 1,
                     "ops": events, "ops_per_s": events / wall,
                     "cpu_ms_per_op": cpu / events * 1000, "p50_ms": wall / events * 1000,
                     "p99_ms": float("nan")})
        ctx.http.close()
        db.dispose()
        cleanup()
    server.shutdown()
    server.server_close()
    return rows
