"""`jitprov connection add-saml` and `refresh-metadata` as an admin meets them: one command
from the IdP's metadata (file or URL) to a connection, printing what to give the IdP."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from jitprov.services import admin, audit_export
from jitprov.testing.saml_idp import SAML_MAPPING, FakeSamlIdp
from tests.cli.test_cli import cli_context, run
from tests.conftest import TEST_SECRET_KEY
from tests.tls import issue


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database_url: str) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JITPROV_DATABASE_URL", database_url)
    monkeypatch.setenv("JITPROV_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.setenv("JITPROV_BASE_URL", "https://sso.hospital.example")
    monkeypatch.setenv("JITPROV_OUTBOUND_ALLOW", "127.0.0.1/32")  # the metadata server below
    (tmp_path / "saml.yaml").write_text(SAML_MAPPING)
    (tmp_path / "idp.xml").write_bytes(FakeSamlIdp().metadata())
    ctx = cli_context()
    admin.create_tenant(ctx, "hospital")
    ctx.db.dispose()
    return tmp_path


class MetadataServer:
    """The IdP's metadata URL on loopback (https with ``tls``, a server context);
    ``document`` and ``status`` can change."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.document = FakeSamlIdp().metadata()
        self.status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(outer.status)
                self.send_header("Content-Type", "application/samlmetadata+xml")
                self.send_header("Content-Length", str(len(outer.document)))
                self.end_headers()
                self.wfile.write(outer.document)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "http" if tls is None else "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/metadata"


@pytest.fixture
def metadata_server() -> Iterator[MetadataServer]:
    served = MetadataServer()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()


def test_add_saml_from_a_file_prints_what_to_give_the_idp(
        capsys: pytest.CaptureFixture[str], workdir: Path) -> None:
    code, out, err = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                         "adfs", "--idp-metadata-file", "idp.xml", "--mapping", "saml.yaml")
    assert (code, err) == (0, "")
    base = "https://sso.hospital.example/sso/adfs"
    assert f"SP metadata URL:           {base}/saml/metadata" in out
    assert f"SP entity id (audience):   {base}/saml/metadata" in out
    assert f"ACS URL (HTTP-POST):       {base}/saml/acs" in out
    ctx = cli_context()
    conn = admin.get_connection(ctx, "adfs")
    sealed = ctx.secretbox.open(conn.secrets)
    ctx.db.dispose()
    assert conn.kind == "saml"
    assert conn.config["idp_entity_id"] == "https://idp.test.example/saml"
    assert "BEGIN CERTIFICATE" in str(conn.config["sp_certificate"])
    assert "PRIVATE KEY" in sealed["sp_private_key"]
    assert "PRIVATE KEY" not in str(conn.config) and "PRIVATE KEY" not in (conn.secrets or "")
    assert conn.mapping == SAML_MAPPING


def test_add_saml_require_signed_assertion_flag(capsys: pytest.CaptureFixture[str],
                                               workdir: Path) -> None:
    for slug, flag in (("strict", ["--require-signed-assertion"]), ("lenient", [])):
        code, _, err = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                           slug, "--idp-metadata-file", "idp.xml", *flag)
        assert (code, err) == (0, ""), err
    ctx = cli_context()
    strict, lenient = admin.get_connection(ctx, "strict"), admin.get_connection(ctx, "lenient")
    ctx.db.dispose()
    assert (strict.config["require_signed_assertion"],
            lenient.config["require_signed_assertion"]) == (True, False)


def test_add_saml_unsigned_authn_requests_flag(capsys: pytest.CaptureFixture[str],
                                              workdir: Path) -> None:
    """``--unsigned-authn-requests`` stores the choice and says what the IdP will get; an IdP
    whose metadata asks for signed requests still gets them, and the output says so."""
    asking = FakeSamlIdp().metadata().replace(
        b"<md:IDPSSODescriptor ", b'<md:IDPSSODescriptor WantAuthnRequestsSigned="true" ')
    (workdir / "asking.xml").write_bytes(asking)
    outputs = {}
    for slug, metadata, flag in (("lean", "idp.xml", ["--unsigned-authn-requests"]),
                                 ("asked", "asking.xml", ["--unsigned-authn-requests"]),
                                 ("default", "idp.xml", [])):
        code, out, err = run(capsys, "connection", "add-saml", "--tenant", "hospital",
                             "--slug", slug, "--idp-metadata-file", metadata, *flag)
        assert (code, err) == (0, ""), err
        outputs[slug] = out
    assert "AuthnRequests: unsigned" in outputs["lean"]
    assert "AuthnRequests: signed, as the IdP metadata asks" in outputs["asked"]
    assert "AuthnRequests" not in outputs["default"]
    ctx = cli_context()
    stored = {slug: admin.get_connection(ctx, slug).config["sign_authn_requests"]
              for slug in outputs}
    ctx.db.dispose()
    assert stored == {"lean": False, "asked": False, "default": True}


def test_add_saml_from_a_metadata_url(capsys: pytest.CaptureFixture[str], workdir: Path,
                                      metadata_server: MetadataServer) -> None:
    code, _, err = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                       "okta", "--idp-metadata-url", metadata_server.url)
    assert (code, err) == (0, ""), err
    ctx = cli_context()
    conn = admin.get_connection(ctx, "okta")
    ctx.db.dispose()
    assert conn.config["metadata_url"] == metadata_server.url
    assert conn.mapping_source == "default SAML mapping"


def test_a_metadata_url_on_a_private_address_is_refused_alike_whatever_answers_there(
        capsys: pytest.CaptureFixture[str], workdir: Path, metadata_server: MetadataServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the allowlist a tenant admin cannot make the server fetch from loopback, and
    an HTTP service, a closed port and a non-HTTP service give the same answer (no port
    scanner)."""
    monkeypatch.delenv("JITPROV_OUTBOUND_ALLOW")
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
    with socket.socket() as raw:  # accepts, never speaks HTTP
        raw.bind(("127.0.0.1", 0))
        raw.listen()
        urls = [metadata_server.url, f"http://127.0.0.1:{closed_port}/metadata",
                f"http://127.0.0.1:{raw.getsockname()[1]}/metadata",
                "http://localhost:1/metadata"]
        answers = {run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                       f"probe{i}", "--idp-metadata-url", url)[::2] for i, url in enumerate(urls)}
    assert answers == {(2, "error: cannot fetch the IdP metadata: OutboundRefused\n")}
    ctx = cli_context()
    assert [c.slug for c in admin.list_connections(ctx)] == []
    ctx.db.dispose()


def test_an_idp_certificate_from_the_organisations_own_ca_is_trusted_through_ssl_cert_file(
        capsys: pytest.CaptureFixture[str], workdir: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An on-premises IdP whose certificate the organisation's own CA issued: its https
    metadata URL fails the certificate check until SSL_CERT_FILE names a bundle holding
    that CA (README, "Server-side requests")."""
    issued = issue(workdir / "tls", ["127.0.0.1"])
    served = MetadataServer(tls=issued.server_context)
    threading.Thread(target=served.server.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        refused = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                      "adfs", "--idp-metadata-url", served.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(issued.ca))
        added = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                    "adfs", "--idp-metadata-url", served.url)
    finally:
        served.server.shutdown()
        served.server.server_close()
    assert refused[::2] == (2, "error: cannot fetch the IdP metadata: ConnectError\n")
    assert added[::2] == (0, "")
    ctx = cli_context()
    assert admin.get_connection(ctx, "adfs").config["metadata_url"] == served.url
    ctx.db.dispose()


@pytest.mark.parametrize("args", [[], ["--idp-metadata-file", "idp.xml",
                                       "--idp-metadata-url", "https://idp.example/md"]])
def test_add_saml_needs_exactly_one_metadata_source(capsys: pytest.CaptureFixture[str],
                                                    workdir: Path, args: list[str]) -> None:
    code, _, err = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                       "adfs", *args)
    assert code == 2
    assert err == "error: give exactly one of --idp-metadata-url or --idp-metadata-file\n"


def test_add_saml_refuses_unreadable_metadata(capsys: pytest.CaptureFixture[str],
                                              workdir: Path) -> None:
    (workdir / "bad.xml").write_text("<not-metadata/>")
    code, _, err = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                       "adfs", "--idp-metadata-file", "bad.xml")
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1
    ctx = cli_context()
    assert [c.slug for c in admin.list_connections(ctx)] == []
    ctx.db.dispose()


def test_add_saml_refuses_a_plain_http_metadata_url(capsys: pytest.CaptureFixture[str],
                                                    workdir: Path) -> None:
    code, _, err = run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug",
                       "adfs", "--idp-metadata-url", "http://idp.example/metadata")
    assert code == 2
    assert "https" in err


def test_refresh_metadata_applies_a_rollover_and_keeps_the_config_on_failure(
        capsys: pytest.CaptureFixture[str], workdir: Path,
        metadata_server: MetadataServer) -> None:
    assert run(capsys, "connection", "add-saml", "--tenant", "hospital", "--slug", "okta",
               "--idp-metadata-url", metadata_server.url)[0] == 0
    code, out, _ = run(capsys, "connection", "refresh-metadata", "okta")
    assert (code, out) == (0, "connection okta: IdP metadata unchanged (version 1)\n")

    metadata_server.document = FakeSamlIdp(sso_url="https://idp.test.example/sso2").metadata()
    code, out, _ = run(capsys, "connection", "refresh-metadata", "okta")
    assert (code, out) == (0, "connection okta: IdP metadata changed (version 2)\n")

    metadata_server.status = 500
    code, _, err = run(capsys, "connection", "refresh-metadata", "okta")
    assert code == 2 and "HTTP 500" in err
    ctx = cli_context()
    conn = admin.get_connection(ctx, "okta")
    types = [e.type for e in audit_export.iter_events(ctx, "hospital")]
    ctx.db.dispose()
    assert (conn.version, conn.config["idp_sso_url"]) == (2, "https://idp.test.example/sso2")
    assert types[-2:] == ["connection.metadata_refreshed", "connection.metadata_refresh_failed"]
