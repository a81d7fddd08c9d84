"""``python -m bench``: run every benchmark, write bench/results/report.json and report.md.
``--only NAME`` runs one and replaces its section of the report, keeping the others."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench import (
    code_exchange,
    entitlements,
    forward_auth,
    frontline,
    handoff,
    lifecycle,
    log_lines,
    oidc,
    provision,
    revocation,
    saml,
    scim,
    scim_filters,
    surge,
    text_check,
    webhooks,
)

RESULTS = Path(__file__).with_name("results")
BENCHMARKS = {"scim": scim.run, "provision": provision.run, "oidc": oidc.run,
              "forward_auth": forward_auth.run, "lifecycle": lifecycle.run,
              "revocation": revocation.run, "webhooks": webhooks.run, "surge": surge.run,
              "saml": saml.run, "frontline": frontline.run,
              "code_exchange": code_exchange.run, "entitlements": entitlements.run,
              "scim_filters": scim_filters.run, "text_check": text_check.run,
              "handoff": handoff.run, "log_lines": log_lines.run}


def machine() -> dict[str, object]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "sqlalchemy": version("sqlalchemy"),
            "psycopg": version("psycopg"), "jmespath": version("jmespath")}


def to_markdown(report: dict[str, object]) -> str:
    lines = [f"# jitprov benchmarks, {report['date']}", "",
             f"Machine: `{json.dumps(report['machine'])}`", ""]
    updated: dict[str, str] = report.get("updated", {})  # type: ignore[assignment]
    for name, rows in report["results"].items():  # type: ignore[attr-defined]
        lines += [f"## {name}", ""]
        if name in updated:
            lines += [f"(run alone, {updated[name]})", ""]
        waits = any("lock_wait_ms_per_op" in r for r in rows)
        lines += ["| scenario | db | clients | ops | ops/s | CPU ms/op | p50 ms | p99 ms |"
                  + (" PostgreSQL CPU ms/op | lock wait ms/op (audit head) |" if waits else ""),
                  "|---|---|---:|---:|---:|---:|---:|---:|" + ("---:|---:|" if waits else "")]
        lines += [f"| {r['scenario']} | {r['db']} | {r['clients']} | {r['ops']} | "
                  f"{r['ops_per_s']:.0f} | {r['cpu_ms_per_op']:.2f} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} |" + (_database_cells(r) if waits else "")
                  for r in rows]
        lines += [f"\nThe load generator's own CPU (same cores, not in CPU ms/op): "
                  f"{r['load_generator_cpu_ms_per_op']:.2f} ms/op ({r['scenario']}, {r['db']})."
                  for r in rows if r.get("load_generator_cpu_ms_per_op") is not None]
        lines.append("")
    return "\n".join(lines)


def _database_cells(row: dict[str, Any]) -> str:
    """PostgreSQL's CPU and the lock wait per operation (total, and the audit head's)."""
    if "lock_wait_ms_per_op" not in row:
        return "  |  |"
    waits: dict[str, float] = row["lock_wait_ms_per_op"]
    return (f" {row['postgres_cpu_ms_per_op']:.2f} | {sum(waits.values()):.1f} "
            f"({waits.get('audit_head', 0.0):.1f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS))
    parser.add_argument("--ops", type=int, default=2000, help="operations per scenario")
    parser.add_argument("--postgres", default=os.environ.get(
        "JITPROV_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    results = {name: fn(ops=args.ops, postgres_url=args.postgres)
               for name, fn in BENCHMARKS.items() if args.only in (None, name)}
    now = datetime.now(UTC).isoformat(timespec="seconds")
    report: dict[str, Any] = {"date": now, "machine": machine(), "results": results}
    if args.only and (RESULTS / "report.json").exists():  # one section replaced, dated apart
        report = json.loads((RESULTS / "report.json").read_text())
        report["results"] = {**report["results"], **results}
        report["updated"] = {**report.get("updated", {}), args.only: now}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "report.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
