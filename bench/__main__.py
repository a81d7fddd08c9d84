"""``python -m bench``: run every benchmark, write bench/results/report.json and report.md."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from bench import (
    code_exchange,
    entitlements,
    forward_auth,
    frontline,
    lifecycle,
    oidc,
    provision,
    revocation,
    saml,
    scim,
    scim_filters,
    surge,
    webhooks,
)

RESULTS = Path(__file__).with_name("results")
BENCHMARKS = {"scim": scim.run, "provision": provision.run, "oidc": oidc.run,
              "forward_auth": forward_auth.run, "lifecycle": lifecycle.run,
              "revocation": revocation.run, "webhooks": webhooks.run, "surge": surge.run,
              "saml": saml.run, "frontline": frontline.run,
              "code_exchange": code_exchange.run, "entitlements": entitlements.run,
              "scim_filters": scim_filters.run}


def machine() -> dict[str, object]:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpus": os.cpu_count(), "sqlalchemy": version("sqlalchemy"),
            "psycopg": version("psycopg"), "jmespath": version("jmespath")}


def to_markdown(report: dict[str, object]) -> str:
    lines = [f"# jitprov benchmarks, {report['date']}", "",
             f"Machine: `{json.dumps(report['machine'])}`", ""]
    for name, rows in report["results"].items():  # type: ignore[attr-defined]
        lines += [f"## {name}", "",
                  "| scenario | db | clients | ops | ops/s | CPU ms/op | p50 ms | p99 ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {r['scenario']} | {r['db']} | {r['clients']} | {r['ops']} | "
                  f"{r['ops_per_s']:.0f} | {r['cpu_ms_per_op']:.2f} | {r['p50_ms']:.2f} | "
                  f"{r['p99_ms']:.2f} |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS))
    parser.add_argument("--ops", type=int, default=2000, help="operations per scenario")
    parser.add_argument("--postgres", default=os.environ.get(
        "JITPROV_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    args = parser.parse_args()
    results = {name: fn(ops=args.ops, postgres_url=args.postgres)
               for name, fn in BENCHMARKS.items() if args.only in (None, name)}
    report = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
              "results": results}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "report.json").write_text(json.dumps(report, indent=2))
    (RESULTS / "report.md").write_text(to_markdown(report))
    print(to_markdown(report))


if __name__ == "__main__":
    main()
