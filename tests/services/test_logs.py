"""The server's log lines (``logs.configure``, as ``serve`` and each worker call it): structlog's
events and the standard library's records alike, one JSON object per line, the level
respected, secrets redacted, exceptions rendered. In a child process: ``configure`` sets up
logging for its whole process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given

from jitprov.services import logs
from tests.store.test_json_columns import _same, _values

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


def _run_on_a_database(script: str, sqlite_template: Path,
                       tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``script`` in a child process (stdout and stderr pipes), given the URL of a fresh
    SQLite database, from the repository's root (it imports ``tests``)."""
    path = tmp_path / "jitprov.db"
    shutil.copy(sqlite_template, path)
    return subprocess.run([sys.executable, "-c", script, f"sqlite:///{path}"],
                          capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])


def test_a_login_over_http_succeeds_while_stderr_is_broken(sqlite_template: Path,
                                                           tmp_path: Path) -> None:
    done = _run_on_a_database(LOGIN_WITH_BROKEN_STDERR, sqlite_template, tmp_path)
    assert done.stdout.split() == ["303", "200"], done.stdout + done.stderr[-2000:]


BATCHES = textwrap.dedent("""
    import logging
    import sys
    import time

    from jitprov.services import logs

    # "pipe": the process's own stderr (the test reads it through a pipe); else a file
    target = sys.__stderr__ if sys.argv[1] == "pipe" else open(sys.argv[2], "w")


    class Counted:
        # the process's stderr, counting the writes that reach it
        writes = []

        def fileno(self):
            return target.fileno()

        def write(self, text):
            self.writes.append(text)
            return target.write(text)

        def flush(self):
            target.flush()


    sys.stderr = Counted()
    logs.configure("json", "INFO")
    log = logs.get_logger("jitprov.request")
    for n in range(200):  # a burst of request lines
        log.info("request", n=n)
    burst = len(Counted.writes)
    log.warning("slow", n=200)  # at once, after the lines before it
    after_warning = "".join(Counted.writes)
    deadline = time.monotonic() + 5
    log.info("request", n=201)
    waited = len(Counted.writes)
    while '"n": 201' not in "".join(Counted.writes) and time.monotonic() < deadline:
        time.sleep(0.001)
    # the standard library's records (uvicorn's start and stop lines): at once
    logging.getLogger("uvicorn.error").info("stdlib %s", "line")
    assert "stdlib line" in Counted.writes[-1]
    logs.BATCH_WINDOW = 60  # the writer thread would wait past the exit: the exit writes it
    log.info("request", n=202)
    print(burst, len(Counted.writes), waited, after_warning.count('"request"'),
          '"slow"' in after_warning.splitlines()[-1], flush=True)
""")


def test_lines_to_a_pipe_go_out_in_batches_and_none_is_lost(tmp_path: Path) -> None:
    """A pipe (a container runtime's, journald's stream): a burst of request lines goes out in
    a few writes, not one each; a warning goes out at once after the lines before it; a line
    waits a few milliseconds at most, and what still waits at exit is written."""
    done = subprocess.run([sys.executable, "-c", BATCHES, "pipe"],
                          capture_output=True, text=True, timeout=60, check=True)
    burst, writes, waited, before_warning, warning_last = done.stdout.split()
    # the 200 lines of the burst: not one write each (the writer thread wakes for a batch)
    assert int(burst) < 20, done.stdout
    assert (int(before_warning), warning_last) == (200, "True")
    assert int(writes) > int(waited)  # the later line went out without another line
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [line.get("n") for line in lines if line["logger"] == "jitprov.request"] == \
        [*range(200), 200, 201, 202]  # in order, the last one written at exit


def test_lines_to_a_file_are_written_one_by_one(tmp_path: Path) -> None:
    out = tmp_path / "stderr.log"
    done = subprocess.run([sys.executable, "-c", BATCHES, "file", str(out)],
                          capture_output=True, text=True, timeout=60, check=True)
    burst, writes, waited, before_warning, _ = done.stdout.split()
    assert (int(burst), int(before_warning)) == (200, 200)  # a write each, at once
    assert (int(waited), int(writes)) == (202, 204)
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line.get("n") for line in lines if line["logger"] == "jitprov.request"] == \
        list(range(203))


AT_SHUTDOWN = textwrap.dedent("""
    import os
    import sys

    from jitprov.services import logs
    from jitprov.services.context import ServiceContext
    from jitprov.services.secretbox import SecretBox
    from jitprov.store.database import Database
    from tests.conftest import TEST_SECRET_KEY
    from tests.web.helpers import make_client

    logs.configure("json", "INFO")  # stderr: a pipe the test reads
    logs.BATCH_WINDOW = 60  # nothing goes out by the writer thread in this test
    log = logs.get_logger("jitprov.example")
    log.info("before_fork")
    pid = os.fork()
    if pid == 0:  # a forked child writes its own lines only
        log.info("in_child")
        logs.flush()
        os._exit(0)
    os.waitpid(pid, 0)
    ctx = ServiceContext(db=Database.connect(sys.argv[1]), secretbox=SecretBox(TEST_SECRET_KEY))
    with make_client(ctx) as client:  # the app's lifespan: its shutdown writes what waits
        assert client.get("/healthz").status_code == 200
        print("served", flush=True)
    print("stopped", flush=True)
    sys.stderr.flush()
    os.kill(os.getpid(), 9)  # no exit hook: what was not written by now is lost
""")


def test_the_apps_shutdown_writes_the_lines_still_waiting_and_a_fork_repeats_none(
        sqlite_template: Path, tmp_path: Path) -> None:
    """uvicorn ends a worker by re-raising SIGTERM, so no exit hook runs: the app's shutdown
    writes the request lines still waiting. A forked child writes none of its parent's."""
    done = _run_on_a_database(AT_SHUTDOWN, sqlite_template, tmp_path)
    assert done.stdout.split() == ["served", "stopped"], done.stdout + done.stderr[-2000:]
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert events.count("before_fork") == 1 and events.count("in_child") == 1, events
    assert "request" in events, events


STALLED = textwrap.dedent("""
    import sys

    from jitprov.services import logs

    logs.configure("json", "INFO")
    logs.BATCH_WINDOW = 60
    written = []
    real = sys.stderr


    class Counted:
        def fileno(self):
            return real.fileno()

        def write(self, text):
            written.append(text)

        def flush(self):
            pass


    sys.stderr = Counted()
    log = logs.get_logger("jitprov.request")
    for n in range(logs.MAX_WAITING):
        log.info("request", n=n)
    print(len(written), end=" ")
    log.info("request", n=logs.MAX_WAITING)  # one more than may wait: the caller writes
    print(len(written), "".join(written).count('"request"'), flush=True)
""")


def test_past_the_lines_that_may_wait_the_caller_writes() -> None:
    """A log reader that stalls slows the server's callers, as a stream written at once does,
    instead of piling lines up in memory."""
    done = subprocess.run([sys.executable, "-c", STALLED], capture_output=True, text=True,
                          timeout=60, check=True)
    before, after, lines = done.stdout.split()
    # the 1,000 waiting lines in one write, then the caller's own
    assert (int(before), int(after), int(lines)) == (0, 2, 1001), done.stdout


FROM_A_SIGNAL_HANDLER = textwrap.dedent("""
    import signal
    import sys

    from jitprov.services import logs

    logs.configure("json", "INFO")  # stderr: a pipe the test reads
    log = logs.get_logger("jitprov.example")
    handled = []


    def on_alarm(_signum, _frame):  # may run while the main thread is inside add() or flush()
        handled.append(1)
        log.info("from_handler", n=len(handled))


    signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
    for n in range(20000):
        log.info("from_main", n=n)
    signal.setitimer(signal.ITIMER_REAL, 0)
    print(len(handled), flush=True)
""")


def test_lines_survive_signals_and_a_signal_handler_may_log() -> None:
    """Signals every 0.2 ms, whose handler logs, while 20,000 lines go out in batches to a
    pipe, stderr's binary layer unbuffered as container images set it (PYTHONUNBUFFERED): a
    write a signal cuts short is completed, and a line logged from the handler in the middle
    of a write goes after it. Every line arrives whole, in order."""
    for _ in range(3):  # a cut write shows in most runs, not every one
        done = subprocess.run([sys.executable, "-c", FROM_A_SIGNAL_HANDLER],
                              capture_output=True, text=True, timeout=120, check=True,
                              env={**os.environ, "PYTHONUNBUFFERED": "1"})
        events = [json.loads(line) for line in done.stderr.splitlines()]
        handled = int(done.stdout)
        assert handled > 0
        assert [e["n"] for e in events if e["event"] == "from_main"] == list(range(20000))
        assert sum(1 for e in events if e["event"] == "from_handler") == handled


JSON_LINES = textwrap.dedent("""
    import datetime
    from jitprov.services import logs

    logs.configure("json", "INFO")
    log = logs.get_logger("jitprov.example")
    log.info("plain", status=200, duration_ms=1.5, client=None, roles=["nurse"])
    log.info("accented", name="Zoë Ångström")
    log.info("odd", when=datetime.date(2026, 12, 8), ratio=float("nan"), big=2**70)
""")


def test_json_lines_are_compact_ascii_and_mean_what_json_dumps_wrote() -> None:
    """orjson writes the plain line; json.dumps the others, in the same compact shape."""
    done = subprocess.run([sys.executable, "-c", JSON_LINES], capture_output=True,
                          text=True, timeout=60, check=True)
    plain, accented, odd = done.stderr.splitlines()
    assert plain.startswith('{"status":200,"duration_ms":1.5,"client":null,"roles":["nurse"],')
    assert json.loads(plain)["event"] == "plain"
    # the others as json.dumps writes them: non-ASCII escaped, a date as its repr, NaN
    assert plain.isascii() and accented.isascii() and odd.isascii()
    assert accented.startswith('{"name":"Zo\\u00eb \\u00c5ngstr\\u00f6m","event":"accented",')
    assert json.loads(accented)["name"] == "Zoë Ångström"
    assert odd.startswith('{"when":"datetime.date(2026, 12, 8)","ratio":NaN,'
                          '"big":1180591620717411303424,"event":"odd",')


@given(_values)
def test_a_json_line_reads_back_what_json_dumps_wrote(value: object) -> None:
    from structlog.processors import _json_fallback_handler

    event = {"event": "request", "value": value}
    try:
        expected = json.dumps(event, default=_json_fallback_handler)
    except (TypeError, ValueError, RecursionError) as exc:
        with pytest.raises(type(exc)):
            logs.json_line(event, default=_json_fallback_handler)
        return
    line = logs.json_line(event, default=_json_fallback_handler)
    assert line.isascii()
    assert _same(json.loads(line), json.loads(expected))


def test_an_enum_member_or_a_uuid_in_a_json_line_is_its_value() -> None:
    """orjson writes both itself (json.dumps's fallback wrote their repr): the documented
    difference, pinned."""
    import enum
    import uuid

    class Kind(enum.Enum):
        SAML = "saml"

    line = logs.json_line({"kind": Kind.SAML, "id": uuid.UUID(int=5)}, default=repr)
    assert line == '{"kind":"saml","id":"00000000-0000-0000-0000-000000000005"}'
