"""The mapping editor in a real browser: `jitprov dev`, demo users sign in (their claims are
recorded), an admin opens the console with the one-time link `jitprov dev` prints, adds a
SAML connection from an uploaded metadata file, edits the demo mapping (live validation
names the line of a mistake), sees the impact preview (who loses which role, who becomes
denied) and saves.

Runs the real `jitprov dev` server and drives Debian's Chromium through Playwright. Skipped
when Chromium is missing, unless JITPROV_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jitprov.testing.saml_idp import FakeSamlIdp
from tests.e2e.test_demo_in_browser import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LINK = re.compile(r"Admin console: (http://\S+/admin/bootstrap#\S+)")


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`jitprov dev` on a free port; (its URL, the admin link it printed)."""
    if CHROMIUM is None:
        if os.environ.get("JITPROV_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (JITPROV_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian chromium is not installed")
    workdir = tmp_path_factory.mktemp("dev-admin")
    port = free_port()
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{workdir}/jitprov.db"}
    env.pop("JITPROV_BASE_URL", None)
    jitprov = str(Path(sys.executable).with_name("jitprov"))
    proc = subprocess.Popen([jitprov, "dev", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    url = f"http://localhost:{port}"  # the URL dev prints
    deadline = time.monotonic() + 60
    link = None
    while time.monotonic() < deadline:
        found = LINK.search("".join(output))
        link = found.group(1) if found else None
        try:
            if link and httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            pytest.fail(f"jitprov dev exited: {''.join(output)}")
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"jitprov dev did not answer within 60 s: {''.join(output)}")
    assert link is not None
    yield url, link
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    reader.join(timeout=5)
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def sign_in_demo_user(browser: object, server: str, preset: str) -> None:
    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(f"{server}/sso/demo/login?return_to=/")
    page.select_option("#preset", label=preset)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#roles")
    context.close()


def test_admin_edits_a_mapping_with_live_validation_impact_preview_and_save(
        dev_server: tuple[str, str], browser: object, tmp_path: Path) -> None:
    server, link = dev_server
    sign_in_demo_user(browser, server, "Ana Lima: nurse on Ward 3")
    sign_in_demo_user(browser, server, "Chen Wei: pharmacist, IdP group named 'admin'")

    context = browser.new_context()  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # the one-time link: its code travels in the fragment and the page fills the form
    page.goto(link)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{server}/admin")

    # a SAML connection from an uploaded metadata file
    metadata = tmp_path / "idp-metadata.xml"
    metadata.write_bytes(FakeSamlIdp().metadata())
    page.goto(f"{server}/admin/connections/new?tenant=demo")
    page.fill("#saml-slug", "adfs")
    page.set_input_files("#saml-file", str(metadata))
    page.wait_for_function("document.getElementById('saml-xml').value.includes('EntityDescriptor')")
    page.get_by_role("button", name="Add the SAML connection").click()
    page.wait_for_selector("#connection-adfs")
    assert "Connection adfs created." in page.locator(".flash").inner_text()
    assert page.locator("#connection-adfs a", has_text="SP metadata").count() == 1
    assert "2" in page.locator("#connection-demo td.num").inner_text()  # recorded logins
    page.screenshot(path=str(tmp_path / "connections.png"), full_page=True)

    # the mapping editor: a mistake is named with its line while typing
    page.locator("#connection-demo a", has_text="Edit mapping").click()
    page.wait_for_selector("#mapping")
    original = page.input_value("#mapping")
    broken = original.replace("when: contains(groups, 'Nurses')",
                              "when: contains(groups, 'Nurses'")
    page.fill("#mapping", broken)
    problem = page.locator("#mapping-problems .problem")
    problem.wait_for()
    line = original.splitlines().index("      when: contains(groups, 'Nurses')") + 1
    assert problem.inner_text().startswith(f"Line {line}")
    assert "nurses" in problem.inner_text()

    # fixed and changed: nurses also need Ward 5, and a new deny rule for the 'admin' group
    proposed = original.replace(
        "when: contains(groups, 'Nurses')",
        "when: contains(groups, 'Nurses') && department == 'Ward 5'").replace(
        "deny:\n", "deny:\n  - id: no-admin-group\n    when: contains(groups, 'admin')\n"
        "    reason: the IdP group admin is not allowed here\n")
    page.fill("#mapping", proposed)
    page.wait_for_selector("#mapping-problems .ok-text")

    # test with a recorded login, under the unsaved text
    ana_option = page.locator("#recorded option", has_text="ana.lima@")
    page.select_option("#recorded", value=ana_option.get_attribute("value"))
    page.get_by_role("button", name="Test").click()
    page.wait_for_selector("#test-result")
    assert "UPDATE" in page.locator("#test-result .decision").inner_text().upper()
    assert "revokes" in page.locator("#test-result dl").inner_text()

    # impact preview, then save
    page.get_by_role("button", name="Preview the impact").click()
    page.wait_for_selector("#impact-table")
    summary = page.locator("#impact-summary").inner_text()
    assert summary.startswith("2 recorded login(s) replayed: 2 changed, 1 newly denied")
    rows = page.locator("#impact-table tbody tr").all_inner_texts()
    ana = next(r for r in rows if "ana.lima@" in r)
    chen = next(r for r in rows if "chen.wei@" in r)
    assert "\u2212 nurse" in ana
    assert "newly denied" in chen and "the IdP group admin is not allowed here" in chen
    page.screenshot(path=str(tmp_path / "impact-preview.png"), full_page=True)

    page.get_by_role("button", name="Save this mapping").click()
    page.wait_for_selector(".flash")
    assert "Mapping saved: version 2 is in force." == page.locator(".flash").inner_text()
    assert "department == 'Ward 5'" in page.input_value("#mapping")
    assert not [e for e in errors if "Content Security Policy" in e]
    context.close()
