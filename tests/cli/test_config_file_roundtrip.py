"""The property of configuration as code: ``export``, then ``apply`` of that file on an
empty database, then ``export`` again gives the same file (through the console script, on
SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, given, settings

from jitprov.cli.main import main
from jitprov.protocols.saml import generate_sp_keypair
from jitprov.store.database import Database
from jitprov.store.tables import metadata
from tests.conftest import TEST_SECRET_KEY
from tests.strategies import config_documents

IDP_CERT = generate_sp_keypair("round-trip idp")[1]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(list(argv))
    out, err = capsys.readouterr()
    code = exited.value.code
    return (code if isinstance(code, int) else 0), out, err


def empty(database_url: str, sqlite_template: Path) -> None:
    """Make the test database empty again (migrated, no rows)."""
    if database_url.startswith("sqlite"):
        path = Path(sa.make_url(database_url).database or "")
        for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
            extra.unlink(missing_ok=True)
        shutil.copy(sqlite_template, path)
        return
    db = Database.connect(database_url, pool_size=1)
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    db.dispose()


def secret_values(text: str) -> dict[str, str]:
    """A value for each ${NAME} the file references (webhook secrets in their format)."""
    values = {}
    for name in set(re.findall(r"\$\{([A-Z0-9_]+)\}", text)):
        seed = hashlib.sha256(name.encode()).digest()
        values[name] = ("whsec_" + base64.b64encode(seed).decode() if "WEBHOOK" in name
                        else seed.hex())
    return values


@settings(max_examples=8, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                  HealthCheck.too_slow])
@given(document=config_documents(IDP_CERT))
def test_export_apply_on_an_empty_database_export_gives_the_same_file(
        document: dict[str, object], database_url: str, sqlite_template: Path,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_WEBHOOK_ALLOW_PRIVATE", "1")
    built = yaml.safe_dump(document, sort_keys=False)
    for name, value in secret_values(built).items():
        monkeypatch.setenv(name, value)
    empty(database_url, sqlite_template)
    (tmp_path / "built.yaml").write_text(built)
    code, _, err = run(capsys, "apply", "-f", str(tmp_path / "built.yaml"))
    assert (code, err) == (0, "")
    code, first, _ = run(capsys, "export")
    assert code == 0

    empty(database_url, sqlite_template)
    (tmp_path / "exported.yaml").write_text(first)
    code, _, err = run(capsys, "apply", "-f", str(tmp_path / "exported.yaml"))
    assert (code, err) == (0, "")
    code, second, _ = run(capsys, "export")
    assert (code, second) == (0, first)
    assert run(capsys, "apply", "-f", str(tmp_path / "exported.yaml"))[1] == "no changes\n"
    exported = yaml.safe_load(first)
    for slug, tenant in document["tenants"].items():  # type: ignore[attr-defined]
        assert exported["tenants"][slug]["policy"] == tenant["policy"]
        assert exported["tenants"][slug]["domains"] == tenant["domains"]
        assert set(exported["tenants"][slug]["connections"]) == set(tenant["connections"])
