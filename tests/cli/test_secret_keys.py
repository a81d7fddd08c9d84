"""The master key as an operator meets it: strength, where it comes from, `jitprov secrets
init | rotate | check`, and `serve` refusing a key that does not open the stored secrets."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from jitprov.cli.main import main
from jitprov.services import webhooks
from jitprov.services.context import build_context
from jitprov.services.identity_tokens import rotate_keys
from jitprov.services.key_rotation import rotate_secrets
from jitprov.settings import SettingsError, load_settings
from jitprov.store.database import Database
from jitprov.testing.builders import setup_connection
from tests.conftest import TEST_SECRET_KEY

JITPROV = str(Path(sys.executable).with_name("jitprov"))
OLD = TEST_SECRET_KEY
NEW = secrets.token_urlsafe(32)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def bare_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory and an environment with no key of any kind."""
    monkeypatch.chdir(tmp_path)
    for name in ("JITPROV_SECRET_KEY", "JITPROV_SECRET_KEYS", "JITPROV_SECRET_KEY_FILE",
                 "JITPROV_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.mark.parametrize("weak", ["a", "correct horse battery staple", "k" * 43,
                                  "00" * 32, secrets.token_hex(16), secrets.token_urlsafe(24)])
def test_a_weak_key_is_refused_at_start_in_one_line(capsys: pytest.CaptureFixture[str],
                                                    bare_env: Path, weak: str) -> None:
    os.environ["JITPROV_SECRET_KEY"] = weak
    try:
        code, out, err = run(capsys, "users", "list", "--tenant", "x")
    finally:
        del os.environ["JITPROV_SECRET_KEY"]
    assert code == 2
    assert err.startswith("error: JITPROV_SECRET_KEY ")
    assert "jitprov secrets init" in err and len(err.strip().splitlines()) == 1
    assert weak not in err + out or len(weak) < 3


@pytest.mark.parametrize("strong", [secrets.token_urlsafe(32), secrets.token_hex(32),
                                    base64.b64encode(secrets.token_bytes(32)).decode(),
                                    secrets.token_urlsafe(64)])
def test_strong_keys_in_base64_or_hex_are_accepted(strong: str) -> None:
    settings = load_settings({"JITPROV_SECRET_KEY": strong})
    assert settings.secret_key == strong and settings.key_source == "JITPROV_SECRET_KEY"


def test_two_key_variables_at_once_are_refused() -> None:
    with pytest.raises(SettingsError, match="set only one of"):
        load_settings({"JITPROV_SECRET_KEY": NEW, "JITPROV_SECRET_KEYS": f"{NEW},{OLD}"})


def test_a_weak_key_among_several_names_its_position() -> None:
    with pytest.raises(SettingsError, match="key 2 of JITPROV_SECRET_KEYS is too weak"):
        load_settings({"JITPROV_SECRET_KEYS": f"{NEW},short"})


@pytest.mark.parametrize("url", ["sqlite:///var/jitprov.db",
                                 "postgresql://postgres@127.0.0.1:5432/test"])
def test_without_a_key_a_command_refuses_and_writes_no_key_file(
        capsys: pytest.CaptureFixture[str], bare_env: Path, url: str) -> None:
    code, _, err = run(capsys, "tenant", "create", "hospital", "--name", "H",
                         "--database-url", url)
    assert code == 2
    assert err.startswith("error: no secret key: set JITPROV_SECRET_KEY")
    assert "jitprov secrets init" in err
    assert not (bare_env / "var" / "secret.key").exists()


def test_secrets_init_writes_a_private_key_file_beside_the_sqlite_database(
        capsys: pytest.CaptureFixture[str], bare_env: Path, sqlite_template: Path) -> None:
    (bare_env / "data").mkdir()
    db_path = bare_env / "data" / "jitprov.db"
    db_path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{db_path}"
    code, out, _ = run(capsys, "secrets", "init", "--database-url", url)
    key_file = bare_env / "data" / "secret.key"
    assert code == 0 and f"secret key written to {key_file}" in out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_settings({}, database_url=url).secret_key == key_file.read_text().strip()
    # every command on that database finds the same key, from any directory
    code, out, err = run(capsys, "tenant", "create", "hospital", "--name", "H",
                         "--database-url", url)
    assert code == 0, err
    code, _, err = run(capsys, "secrets", "init", "--database-url", url)
    assert code == 2 and "already exists" in err  # never replaced


def test_secrets_init_for_postgresql_prints_a_strong_key(capsys: pytest.CaptureFixture[str],
                                                         bare_env: Path) -> None:
    code, out, err = run(capsys, "secrets", "init", "--database-url",
                         "postgresql://postgres@127.0.0.1/test")
    assert code == 0 and "JITPROV_SECRET_KEY" in err
    key = out.strip()
    assert load_settings({"JITPROV_SECRET_KEY": key}).secret_key == key
    assert list(bare_env.iterdir()) == []  # nothing written


def test_a_key_file_named_by_the_environment_may_hold_a_rotation(tmp_path: Path) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text(f"# newest first\n{NEW}\n\n{OLD}\n")
    settings = load_settings({"JITPROV_SECRET_KEY_FILE": str(key_file)})
    assert (settings.secret_key, settings.previous_secret_keys) == (NEW, (OLD,))
    with pytest.raises(SettingsError, match="cannot read the secret key file"):
        load_settings({"JITPROV_SECRET_KEY_FILE": str(tmp_path / "missing")})


def _seal_one_of_each(database_url: str, key: str) -> None:
    """A connection with a sealed key, a webhook secret and identity-token keys."""
    settings = load_settings({"JITPROV_SECRET_KEY": key}, database_url=database_url)
    db = Database.connect(database_url, pool_size=1)
    try:
        ctx = build_context(settings.with_overrides(webhook_allow_private=True), db)
        setup_connection(ctx)  # the demo kind: its signing key is sealed
        webhooks.add_endpoint(ctx, "hospital", "http://127.0.0.1:9/jitprov", ["*"],
                              actor="test")
        rotate_keys(ctx)
    finally:
        db.dispose()


def test_rotation_reseals_everything_once_and_the_old_key_can_go(
        capsys: pytest.CaptureFixture[str], database_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _seal_one_of_each(database_url, OLD)
    monkeypatch.delenv("JITPROV_SECRET_KEY", raising=False)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", NEW)  # the new key alone opens nothing yet
    code, _, err = run(capsys, "secrets", "check")
    assert code == 2 and "secret_key" in err
    monkeypatch.delenv("JITPROV_SECRET_KEY")
    monkeypatch.setenv("JITPROV_SECRET_KEYS", f"{NEW},{OLD}")
    code, out, _ = run(capsys, "secrets", "rotate", "--dry-run")
    assert code == 0 and "connection secrets: 1 to re-seal" in out
    code, out, _ = run(capsys, "secrets", "rotate")
    assert code == 0
    assert "connection secrets: 1 re-sealed, 0 already" in out
    assert "webhook secrets: 1 re-sealed" in out
    assert "identity-token signing keys: 2 re-sealed" in out  # the active and the next one
    code, out, _ = run(capsys, "secrets", "rotate")  # idempotent
    assert "connection secrets: 0 re-sealed, 1 already under the newest key" in out
    monkeypatch.delenv("JITPROV_SECRET_KEYS")
    monkeypatch.setenv("JITPROV_SECRET_KEY", NEW)  # the old key is gone: everything opens
    code, out, _ = run(capsys, "secrets", "check")
    assert code == 0 and out.startswith("ok")
    monkeypatch.setenv("JITPROV_SECRET_KEY", OLD)
    code, _, err = run(capsys, "secrets", "check")
    assert code == 2


def test_rotation_resumes_and_reports_what_no_key_opens(database_url: str) -> None:
    """Batches of one, a value sealed with a third key: the run finishes, counts it, leaves it;
    values already under the newest key (an interrupted run's finished batches) are skipped."""
    _seal_one_of_each(database_url, OLD)
    third = secrets.token_urlsafe(32)
    db = Database.connect(database_url, pool_size=1)
    try:
        only_third = build_context(load_settings({"JITPROV_SECRET_KEY": third}, dev_mode=True),
                                   db)
        webhooks.add_endpoint(only_third, "hospital", "http://127.0.0.1:9/other", ["*"],
                              actor="test")
        both = build_context(load_settings({"JITPROV_SECRET_KEYS": f"{NEW},{OLD}"}), db)
        first = rotate_secrets(both, batch_size=1)
        assert first.kinds["webhook secrets"].resealed == 1
        assert first.kinds["webhook secrets"].unreadable == 1
        again = rotate_secrets(both, batch_size=1)
        assert again.kinds["identity-token signing keys"].current == 2
        assert again.kinds["connection secrets"].resealed == 0
        assert again.unreadable == 1
    finally:
        db.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_refuses_to_start_with_a_key_that_does_not_open_the_stored_secrets(
        tmp_path: Path, sqlite_template: Path) -> None:
    db_path = tmp_path / "jitprov.db"
    db_path.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{db_path}"
    _seal_one_of_each(url, OLD)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITPROV_")}
    env.update(JITPROV_DATABASE_URL=url, JITPROV_SECRET_KEY=NEW)
    done = subprocess.run([JITPROV, "serve", "--port", str(_free_port())], env=env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: not starting: the secret key does not open")
    assert "Traceback" not in done.stderr + done.stdout


def test_dev_keeps_its_own_key_beside_its_database_and_says_so(tmp_path: Path) -> None:
    workdir, data = tmp_path / "elsewhere", tmp_path / "data"
    workdir.mkdir()
    data.mkdir()
    url = f"sqlite:///{data}/jitprov.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JITPROV_")}
    env["JITPROV_DATABASE_URL"] = url
    port = _free_port()
    proc = subprocess.Popen([JITPROV, "dev", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            pytest.fail("jitprov dev did not become ready")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    key_file = data / "secret.key"
    assert f"Secret key: {key_file}" in out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not (workdir / "var").exists()
    # another command, from another directory, opens what dev sealed with that key
    listed = subprocess.run([JITPROV, "secrets", "check"], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
