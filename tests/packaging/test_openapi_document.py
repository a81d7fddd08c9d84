"""The admin API's OpenAPI document is committed (docs/openapi.json) for people and client
generators; this fails when the app's schema drifts from it (regenerate with
``python -m tests.packaging.test_openapi_document``)."""

from __future__ import annotations

import json
from pathlib import Path

from jitprov.services.context import ServiceContext
from jitprov.settings import Settings
from jitprov.web.app import create_app
from tests.conftest import TEST_SECRET_KEY

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def current_schema(ctx: ServiceContext) -> str:
    app = create_app(Settings(secret_key=TEST_SECRET_KEY), ctx=ctx)
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


def test_the_committed_document_is_the_apps(ctx: ServiceContext) -> None:
    assert DOCUMENT.exists(), "docs/openapi.json is missing: regenerate it"
    assert DOCUMENT.read_text("utf-8") == current_schema(ctx), (
        "the admin API changed: regenerate docs/openapi.json with "
        "`python -m tests.packaging.test_openapi_document`")


if __name__ == "__main__":  # regenerate
    import tempfile

    from jitprov.services.secretbox import SecretBox
    from jitprov.store.database import Database

    with tempfile.TemporaryDirectory() as scratch:
        database = Database.connect(f"sqlite:///{scratch}/schema.db", pool_size=1)
        DOCUMENT.write_text(current_schema(ServiceContext(db=database,
                                                          secretbox=SecretBox(TEST_SECRET_KEY))))
        database.dispose()
    print(f"wrote {DOCUMENT}")
