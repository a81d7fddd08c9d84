"""``jitprov serve`` and ``jitprov dev``: their options. The server code (uvicorn, the web
app, the background jobs) is imported only when one of them runs."""

from __future__ import annotations

from typing import Annotated

import typer

from jitprov.cli.common import DatabaseUrl, cli_settings


def serve(host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
          port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
          workers: Annotated[int, typer.Option(
              min=1, max=64, help="worker processes (each with its own database pool)")] = 1,
          database_url: DatabaseUrl = None) -> None:
    """Run the server (production). Refuses dev-only connection kinds."""
    from jitprov.cli.servers import run_serve

    run_serve(cli_settings(database_url), host=host, port=port, workers=workers)


def dev(host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
        database_url: DatabaseUrl = None) -> None:
    """Embedded demo: migrates the SQLite database, adds a demo tenant and IdP, serves."""
    from jitprov.cli.servers import run_dev

    run_dev(cli_settings(database_url, dev_mode=True), host=host, port=port)
