"""The admin console in a real browser: `jitprov dev`, Debian's Chromium through Playwright.

Two demo users sign in through the demo IdP (a nurse; a charge nurse whose role waits for
approval); then an administrator opens the one-time link `jitprov admin bootstrap` prints,
finds the nurse and reads why she holds her role, approves the charge nurse's pending grant,
and deactivates the nurse, whose session ends at once. No Content-Security-Policy violation
is allowed on any page. With JITPROV_SCREENSHOTS=1 the main pages are saved as
docs/screenshots/admin-*.png. Skipped without Chromium, unless JITPROV_REQUIRE_BROWSER=1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.a11y import serious_violations
from tests.e2e.test_demo_in_browser import CHROMIUM, CHROMIUM_ARGS, free_port

pytestmark = pytest.mark.e2e

JITPROV = str(Path(sys.executable).with_name("jitprov"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


class Server:
    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.url = url
        self.env = env

    def cli(self, *args: str) -> str:
        done = subprocess.run([JITPROV, *args], env={**self.env, "JITPROV_BASE_URL": self.url},
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if CHROMIUM is None:
        if os.environ.get("JITPROV_REQUIRE_BROWSER") == "1":
            pytest.fail("Chromium is required (JITPROV_REQUIRE_BROWSER=1) but not installed")
        pytest.skip("Debian chromium is not installed")
    workdir = tmp_path_factory.mktemp("admin")
    port = free_port()
    env = {**os.environ, "JITPROV_DATABASE_URL": f"sqlite:///{workdir}/jitprov.db"}
    env.pop("JITPROV_BASE_URL", None)
    proc = subprocess.Popen([JITPROV, "dev", "--port", str(port)], cwd=workdir, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://localhost:{port}"  # the URL dev prints
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            pytest.fail("jitprov dev exited")
    else:
        proc.kill()
        pytest.fail("jitprov dev did not answer within 60 s")
    yield Server(url, {**env, "JITPROV_DATABASE_URL": f"sqlite:///{workdir}/jitprov.db"})
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def demo_sign_in(browser: Any, server: Server, preset: str) -> Any:
    """A demo user signed in through the demo IdP, in a browser context of their own."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/sso/demo/login?return_to=/")
    page.select_option("#preset", label=preset)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#roles")
    return context


def shot(page: Any, name: str) -> None:
    """Every main page of the console passes axe-core (no serious or critical violation);
    with JITPROV_SCREENSHOTS=1 it is saved too."""
    assert serious_violations(page) == [], name
    if os.environ.get("JITPROV_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"admin-{name}.png"), full_page=True)


def test_admin_reads_why_approves_and_deactivates(server: Server, browser: Any) -> None:
    nurse = demo_sign_in(browser, server, "Ana Lima: nurse on Ward 3")
    demo_sign_in(browser, server, "Ben Okafor: charge nurse (role needs approval)").close()
    assert 200 == nurse.request.get(server.url + "/me").status

    link = re.search(r"https?://\S+/admin/bootstrap#\S+",
                     server.cli("admin", "bootstrap", "--tenant", "demo"))
    assert link, "jitprov admin bootstrap printed no link"
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    violations: list[str] = []
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)

    # sign in with the one-time link: the page's script fills the code from the fragment
    page.goto(server.url + "/admin")
    assert page.url.endswith("/admin/sign-in")
    shot(page, "sign-in")
    page.goto(link.group(0))
    assert page.locator("#bootstrap-token").input_value().startswith("jpb_")
    assert "#" not in page.url  # the code left the address bar
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("h1:has-text('Dashboard')")
    assert page.locator("#stat-pending .value").inner_text() == "1"
    assert page.locator("#activity tbody tr").count() == 14
    shot(page, "dashboard")

    # find the nurse and read why she holds her role
    page.get_by_role("link", name="Users").click()
    page.get_by_label("Email, name or external id").fill("ana")
    page.get_by_role("button", name="Search").click()
    shot(page, "users")
    page.get_by_role("link", name="ana.lima@demo.hospital").click()
    roles = dict(zip(page.locator("#roles tr.role th").all_inner_texts(),
                     page.locator("#roles tr.role td.provenance").all_inner_texts(),
                     strict=True))
    assert roles["nurse"].startswith("granted by rule nurses (connection demo) at login on ")
    assert roles["staff"].startswith("granted by rule default (connection demo)")
    assert page.locator("#roles td.provenance code").all_inner_texts()[:1] == ["nurses"]
    assert page.locator("#sessions tbody tr").count() == 1
    shot(page, "user")

    # approve the charge nurse's pending grant
    page.get_by_role("link", name="Approvals").click()
    page.get_by_label("Reason").fill("charge nurse on the Ward 3 rota")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector("#no-requests")
    assert "Approved" in page.locator(".flash").inner_text()
    page.get_by_role("link", name="Dashboard").click()
    assert page.locator("#stat-pending .value").inner_text() == "0"

    # deactivate the nurse: her session ends at once
    page.get_by_role("link", name="Users").click()
    page.get_by_role("link", name="ana.lima@demo.hospital").click()
    page.get_by_label("Reason (recorded in the audit log)").fill("left the hospital")
    page.get_by_role("button", name="Deactivate account").click()
    page.wait_for_selector(".flash")
    assert "deactivated" in page.locator("h1 .tag").inner_text()
    assert page.locator("#sessions tbody tr").inner_text() == "No active session."
    assert 401 == nurse.request.get(server.url + "/me").status

    page.get_by_role("link", name="Audit").click()
    assert page.locator("#events code", has_text="account.deactivated").count() == 1
    shot(page, "audit")
    assert_opened_details_keep_the_type_column(page)
    page.get_by_role("button", name="Verify the chain").click()
    assert "is intact" in page.locator("#verify-result").inner_text()

    # tablet width: the same console, reflowed
    page.set_viewport_size({"width": 768, "height": 1024})
    page.get_by_role("link", name="Dashboard").click()
    assert page.get_by_role("link", name="Webhooks").is_visible()
    shot(page, "dashboard-tablet")

    assert [] == violations
    context.close()
    nurse.close()


def assert_opened_details_keep_the_type_column(page: Any) -> None:
    """An event's details, opened, must not squeeze the event-type column letter by letter:
    at tablet width each type stays on one line, as wide as before."""
    page.set_viewport_size({"width": 768, "height": 1024})
    codes = page.locator("#events td.event-type code")
    before = [codes.nth(i).bounding_box() for i in range(codes.count())]
    page.locator("#events details").evaluate_all("all => all.forEach(d => { d.open = true; })")
    after = [codes.nth(i).bounding_box() for i in range(codes.count())]
    line = page.evaluate("parseFloat(getComputedStyle("
                         "document.querySelector('#events td.event-type code')).fontSize)")
    assert len(before) > 5
    for old, new in zip(before, after, strict=True):
        assert new["height"] < 1.8 * line  # one line
        assert new["height"] == pytest.approx(old["height"], abs=1)
        assert new["width"] >= old["width"] - 1
    page.locator("#events details").evaluate_all("all => all.forEach(d => { d.open = false; })")
    page.set_viewport_size({"width": 1280, "height": 900})


def test_keyboard_reaches_the_navigation_first(server: Server, browser: Any) -> None:
    link = re.search(r"https?://\S+/admin/bootstrap#\S+", server.cli("admin", "bootstrap"))
    assert link
    page = browser.new_page()
    page.goto(link.group(0))
    page.get_by_role("button", name="Sign in").press("Enter")
    page.wait_for_selector("h1:has-text('Dashboard')")

    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Dashboard"
    page.close()
