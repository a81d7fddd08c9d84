"""The README's promise, in a real browser: `jitprov dev`, pick a demo user, sign in, and see
the account provisioned Just-in-Time with roles mapped by rules.

Runs the real `jitprov dev` server as a subprocess and drives Debian's Chromium through
Playwright. Skipped when Chromium is missing, unless JITPROV_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def dev_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The working directory of `jitprov dev`, which holds its database (jitprov.db)."""
    return tmp_path_factory.mktemp("dev")


@pytest.fixture(scope="module")
def dev_server(dev_workdir: Path) -> Iterator[str]:
    if CHROMIUM is None:
        if os.environ.get("JITPROV_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (JITPROV_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian chromium is not installed")
    workdir = dev_workdir
    port = free_port()
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{workdir}/jitprov.db"}
    env.pop("JITPROV_BASE_URL", None)
    jitprov = str(Path(sys.executable).with_name("jitprov"))
    proc = subprocess.Popen([jitprov, "dev", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://localhost:{port}"  # the URL dev prints
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail(f"jitprov dev exited: {proc.stdout.read() if proc.stdout else ''}")
    else:
        proc.kill()
        pytest.fail("jitprov dev did not answer within 60 s")
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    if proc.stdout:
        proc.stdout.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def test_demo_user_is_provisioned_at_first_login_with_rule_roles(
        dev_server: str, browser: object, tmp_path: Path) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(dev_server + "/")
    page.get_by_role("link", name="Sign in with demo").click()
    page.select_option("#preset", label="Ana Lima: nurse on Ward 3")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#roles")
    assert page.locator("h1").inner_text() == "Signed in as Ana Lima"
    roles = dict(zip(page.locator("#roles tr.role th").all_inner_texts(),
                     page.locator("#roles tr.role td").all_inner_texts(), strict=True))
    assert roles == {"nurse": "rule:demo/nurses", "staff": "rule:demo/default"}
    page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)
    me = page.request.get(dev_server + "/me").json()
    assert (me["email"], me["roles"], me["provisioned_by"]) == (
        "ana.lima@demo.hospital", ["nurse", "staff"], "jit")
    page.get_by_role("button", name="Sign out").click()
    assert page.request.get(dev_server + "/me").status == 401
    page.close()


def test_idp_group_named_admin_grants_nothing(dev_server: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(dev_server + "/sso/demo/login?return_to=/")
    page.select_option("#preset", label="Chen Wei: pharmacist, IdP group named 'admin'")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#roles")
    assert sorted(page.locator("#roles tr.role th").all_inner_texts()) == ["pharmacist", "staff"]
    page.close()


def test_unverified_email_gets_a_readable_refusal(dev_server: str, browser: object) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(dev_server + "/sso/demo/login?return_to=/")
    page.select_option("#preset", label="Dana Roe: contractor, email not verified (denied)")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#message")
    assert page.locator("h1").inner_text() == "Access refused"
    assert "has not verified your email" in page.locator("#message").inner_text()
    page.close()


def test_the_landing_page_asks_for_the_email_once_a_domain_is_verified(
        dev_server: str, dev_workdir: Path, browser: object) -> None:
    """Last in this module: it verifies a domain on the shared dev database. The demo button
    stays (dev mode); the email form routes to the demo connection with the hint."""
    jitprov = str(Path(sys.executable).with_name("jitprov"))
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{dev_workdir}/jitprov.db"}
    added = subprocess.run([jitprov, "tenant", "add-domain", "demo", "demo.hospital",
                            "--connection", "demo"], cwd=dev_workdir, env=env,
                           capture_output=True, text=True, timeout=60, check=False)
    assert added.returncode == 0, added.stderr
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(dev_server + "/")
    assert page.get_by_role("link", name="Sign in with demo").is_visible()
    page.get_by_label("Your work email address").fill("chen.wei@Demo.Hospital")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector("#preset")
    assert "/dev/idp/demo?" in page.url
    page.select_option("#preset", label="Ana Lima: nurse on Ward 3")
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#roles")
    assert page.locator("h1").inner_text() == "Signed in as Ana Lima"
    page.get_by_role("button", name="Sign out").click()
    page.goto(dev_server + "/")
    page.get_by_label("Your work email address").fill("someone@elsewhere.example")
    page.get_by_role("button", name="Continue").click()
    page.wait_for_selector("#message")
    assert "no organisation signs in here" in page.locator("#message").inner_text()
    page.close()
