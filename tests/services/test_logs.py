"""The server's log lines (``logs.configure``, as ``serve`` and each worker call it): structlog's
events and the standard library's records alike, one JSON object per line, the level
respected, secrets redacted, exceptions rendered. In a child process: ``configure`` sets up
logging for its whole process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

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


BROKEN_STDERR = textwrap.dedent("""
    import logging
    import os
    import sys

    from jitprov.services import logs

    logs.configure("json", "INFO")
    log = logs.get_logger("jitprov.login")
    read, write = os.pipe()
    os.close(read)
    os.dup2(write, 2)  # stderr: a pipe whose reader went away (EPIPE)
    for _ in range(3):
        log.info("login_decision", outcome="create")
        logging.getLogger("jitprov.web").warning("stdlib %s", "line")
    print("broken pipe: returned", flush=True)
    sys.stderr.close()  # a closed stream (ValueError)
    log.info("login_decision", outcome="create")
    log.exception("failed")
    logging.getLogger("jitprov.web").warning("stdlib %s", "line")
    print("closed stream: returned", flush=True)
""")


def test_a_failing_stderr_costs_the_line_and_never_raises_to_the_caller() -> None:
    done = subprocess.run([sys.executable, "-c", BROKEN_STDERR], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.splitlines() == ["broken pipe: returned", "closed stream: returned"], \
        done.stdout
    assert done.returncode == 0


LOGIN_WITH_BROKEN_STDERR = textwrap.dedent("""
    import io
    import sys

    from jitprov.services import logs
    from jitprov.services.context import ServiceContext
    from jitprov.services.secretbox import SecretBox
    from jitprov.store.database import Database
    from jitprov.testing.builders import setup_connection
    from tests.conftest import TEST_SECRET_KEY
    from tests.web.helpers import make_client, start, idp_response


    class Broken(io.TextIOBase):
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")


    logs.configure("json", "INFO")
    ctx = ServiceContext(db=Database.connect(sys.argv[1]), secretbox=SecretBox(TEST_SECRET_KEY))
    setup_connection(ctx)
    with make_client(ctx) as client:
        fields = idp_response(client, start(client))
        sys.stderr = Broken()
        # the login's decision is logged after its commit, the request line after the answer
        callback = client.post("/sso/idp/mock/callback", data=fields)
        me = client.get("/me")
        sys.stderr = sys.__stderr__
    print(callback.status_code, me.status_code)
""")


def test_a_login_over_http_succeeds_while_stderr_is_broken(sqlite_template: Path,
                                                           tmp_path: Path) -> None:
    path = tmp_path / "jitprov.db"
    shutil.copy(sqlite_template, path)
    done = subprocess.run([sys.executable, "-c", LOGIN_WITH_BROKEN_STDERR, f"sqlite:///{path}"],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.stdout.split() == ["303", "200"], done.stdout + done.stderr[-2000:]
