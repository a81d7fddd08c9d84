"""The server's log lines (``logs.configure``, as ``serve`` and each worker call it): structlog's
events and the standard library's records alike, one JSON object per line, the level
respected, secrets redacted, exceptions rendered. In a child process: ``configure`` sets up
logging for its whole process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import logging
    from jitprov.services import logs

    log = logs.get_logger("jitprov.example")
    logs.configure("json", "WARNING")
    log.info("hidden")
    log.warning("shown", client_secret="s3cr3t-value", tenant="hospital")
    logging.getLogger("jitprov.web").warning("stdlib %s", "line")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    logging.getLogger().setLevel("INFO")  # a level changed later counts at once
    log.info("now shown")
""")


def test_configured_lines_are_json_with_level_and_redaction() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          timeout=60, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["event"] for e in lines] == ["shown", "stdlib line", "failed", "now shown"]
    shown, stdlib, failed, later = lines
    assert shown["client_secret"] == "[redacted]" and "s3cr3t-value" not in done.stderr
    assert (shown["tenant"], shown["level"], shown["logger"]) == \
        ("hospital", "warning", "jitprov.example")
    assert shown["time"].endswith("Z")
    assert (stdlib["level"], stdlib["logger"]) == ("warning", "jitprov.web")
    assert failed["level"] == "error" and "ValueError: boom" in failed["exception"]
    assert later["level"] == "info"
