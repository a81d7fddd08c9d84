"""The configuration file's JSON Schema is committed (docs/jitprov-config.schema.json) for
editors and CI linters; this fails when the model drifts from it (regenerate with
``python -m tests.services.test_config_file_schema``). It also checks that the file covers
every setting a connection kind stores, and that the schema accepts what export writes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import yaml

from jitprov.protocols.oidc import OidcConfig
from jitprov.protocols.saml import SamlConfig
from jitprov.services import admin, webhooks
from jitprov.services.config_file import ConfigFile, export_config, json_schema
from jitprov.services.config_file.model import OidcSettings, SamlSettings
from jitprov.services.context import ServiceContext
from jitprov.testing.builders import setup_connection

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "jitprov-config.schema.json"


def current_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def test_the_committed_schema_is_the_models() -> None:
    assert DOCUMENT.exists(), "docs/jitprov-config.schema.json is missing: regenerate it"
    assert DOCUMENT.read_text("utf-8") == current_schema(), (
        "the configuration file's model changed: regenerate the schema with "
        "`python -m tests.services.test_config_file_schema`")


def test_the_file_states_every_setting_a_connection_stores() -> None:
    """What jitprov makes itself (the private_key_jwt public key, the SP certificate) is
    not the file's; every other stored setting is."""
    oidc = set(OidcConfig.model_fields) - {"client_public_jwk"}
    saml = {f.name for f in dataclasses.fields(SamlConfig)} - {"sp_certificate"}
    assert set(OidcSettings.model_fields) - {"client_secret"} == oidc
    assert set(SamlSettings.model_fields) == saml


def test_the_schema_accepts_an_export_and_refuses_an_unknown_key(ctx: ServiceContext) -> None:
    setup_connection(ctx)
    admin.add_oidc_connection(ctx, tenant="hospital", slug="okta",
                              config={"issuer": "https://okta.example", "client_id": "c"},
                              client_secret="s", mapping=None, mapping_source=None,
                              check_provider=False)
    ctx.webhook_allow_private = True
    webhooks.add_endpoint(ctx, "hospital", "http://127.0.0.1:9/h", ["*"])
    document = yaml.safe_load(export_config(ctx))
    schema = json.loads(DOCUMENT.read_text("utf-8"))
    jsonschema.validate(document, schema)
    document["tenants"]["hospital"]["connections"]["okta"]["oidc"]["scope"] = ["openid"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(document))
    assert [list(e.absolute_path) for e in errors] == [
        ["tenants", "hospital", "connections", "okta", "oidc"]]



def test_the_readme_example_is_a_valid_file() -> None:
    readme = (DOCUMENT.parents[1] / "README.md").read_text("utf-8")
    section = readme[readme.index("## Configuration as code"):]
    example = section[section.index("```yaml\n") + 8:section.index("```\n", section.index(
        "```yaml\n") + 8)]
    document = yaml.safe_load(example)
    jsonschema.validate(document, json.loads(DOCUMENT.read_text("utf-8")))
    assert ConfigFile.model_validate(document).tenants["hospital"].connections["okta"].kind \
        == "oidc"


if __name__ == "__main__":  # regenerate
    DOCUMENT.write_text(current_schema(), encoding="utf-8")
    print(f"wrote {DOCUMENT}")
