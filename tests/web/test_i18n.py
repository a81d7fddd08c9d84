"""End-user pages in the reader's language: the catalogues are complete, every visible string
of an end-user template goes through gettext, the locale is the tenant's language on a page
that knows its tenant, else follows ``Accept-Language`` (else English), ``lang``/``dir`` say
so, and dates are written in the reader's locale and the tenant's time zone, the zone
named."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from starlette.testclient import TestClient

from jitprov.services import devices
from jitprov.services.context import ServiceContext
from jitprov.web import i18n
from tests.web.helpers import idp_response, make_client, sign_in, start

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "src" / "jitprov" / "web"
TEMPLATES = WEB / "templates"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def extracted() -> dict[str, tuple[str, int]]:
    """What ``pybabel extract -F babel.cfg src/jitprov/web`` finds: msgid -> (file, line)."""
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg, str(ROOT / "babel.cfg"))
    found: dict[str, tuple[str, int]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
            str(WEB), method_map, options_map):
        msgid = message if isinstance(message, str) else message[0]
        found.setdefault(msgid, (filename, lineno))
    return found


def catalogue(locale: str) -> Catalog:
    with (WEB / "locales" / locale / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=locale)


def test_the_extraction_finds_the_pages_strings() -> None:
    messages = extracted()
    assert "Tap to sign in with your passkey" in messages  # a template's
    assert "Too many attempts" in messages  # web/errors.py's, marked N_()
    assert len(messages) > 80


@pytest.mark.parametrize("locale", i18n.LOCALES)
def test_every_message_is_translated_in_each_shipped_locale(locale: str) -> None:
    messages = extracted()
    cat = catalogue(locale)
    missing = [m for m in messages if not (cat.get(m) and cat.get(m).string)]
    fuzzy = [m.id for m in cat if m.id and m.fuzzy]
    stale = [m.id for m in cat if m.id and m.id not in messages]
    assert ([], [], []) == (missing, fuzzy, stale), \
        "run the commands at the top of babel.cfg, then translate"
    for message in cat:
        if message.id:
            assert sorted(PLACEHOLDER.findall(str(message.id))) == \
                sorted(PLACEHOLDER.findall(str(message.string))), message.id


_JINJA = re.compile(r"{%.*?%}|{{.*?}}|{#.*?#}", re.S)
_NOT_TEXT = re.compile(r"<script.*?</script>|<style.*?</style>|<[^>]+>|&\w+;", re.S)
_WORD = re.compile(r"[^\W\d_]")  # a letter: punctuation and separators are not words
_UNTRANSLATED = {"jitprov"}  # the product's name, the same in every language
_VISIBLE_ATTRIBUTE = re.compile(r'\b(?:placeholder|aria-label|alt|title)="([^"]*)"')


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.html")))
def test_no_end_user_template_shows_text_outside_gettext(template: str) -> None:
    """Whatever is left of a template once its Jinja tags, expressions and HTML tags are
    removed is shown as written: it must be nothing but the few words every language
    shares (translated text sits in ``{% trans %}`` blocks, removed here with the tags)."""
    source = (TEMPLATES / template).read_text()
    source = re.sub(r"{%-? *trans.*?{%-? *endtrans *-?%}", "", source, flags=re.S)
    shown = [_JINJA.sub(" ", value) for value in _VISIBLE_ATTRIBUTE.findall(source)]
    assert [v for v in shown if _WORD.search(v)] == []
    words = _NOT_TEXT.sub(" ", _JINJA.sub(" ", source)).split()
    assert [w for w in words if _WORD.search(w) and w not in _UNTRANSLATED] == []


@pytest.mark.parametrize(("header", "expected"), [
    (None, "en"), ("", "en"), ("fr-FR, de;q=0.9", "en"), ("pt-BR", "pt"),
    ("es-MX,es;q=0.9,en;q=0.5", "es"), ("en;q=0.4, pt;q=0.8", "pt"), ("pt;q=0, es", "es"),
    ("PT-pt", "pt"), ("*", "en"), ("x" * 5000, "en"), ("es;q=abc, pt", "pt"),
])
def test_the_locale_follows_accept_language_else_english(header: str | None,
                                                         expected: str) -> None:
    assert expected == i18n.negotiate(header)


def test_the_languages_a_tenant_may_choose_are_the_shipped_catalogues() -> None:
    shipped = {d.name for d in (WEB / "locales").iterdir()
               if (d / "LC_MESSAGES" / "messages.po").is_file()}
    assert shipped == set(devices.SHIPPED_LOCALES) == set(i18n.LOCALES)


def test_a_tenants_language_wins_over_the_browsers_on_its_accounts_pages(
        client: TestClient, ctx: ServiceContext) -> None:
    english = {"Accept-Language": "en"}
    devices.set_policy(ctx, "hospital", devices.FrontlinePolicy(locale="pt"))
    with make_client(ctx) as stranger:  # the landing page knows no tenant: the browser's
        landing = stranger.get("/", headers=english).text
    sign_in(client, return_to="/")

    home = client.get("/", headers=english).text
    mine = client.get("/passkeys", headers=english).text

    assert '<html lang="en" dir="ltr">' in landing
    assert '<html lang="pt" dir="ltr">' in home and "Id da conta" in home
    assert '<html lang="pt" dir="ltr">' in mine and "As suas chaves de acesso" in mine


def test_the_landing_page_speaks_the_readers_language(client: TestClient) -> None:
    english = client.get("/")
    portuguese = client.get("/", headers={"Accept-Language": "pt-BR,pt;q=0.9,en;q=0.8"})
    spanish = client.get("/", headers={"Accept-Language": "es-ES"})

    assert '<html lang="en" dir="ltr">' in english.text
    assert "Sign in with idp" in english.text
    assert '<html lang="pt" dir="ltr">' in portuguese.text
    assert "Entrar com idp" in portuguese.text and "Sign in with" not in portuguese.text
    assert '<html lang="es" dir="ltr">' in spanish.text
    assert "Iniciar sesión con idp" in spanish.text


def test_error_pages_are_translated_around_the_request_id(client: TestClient) -> None:
    r = client.get("/sso/nosuch/login", headers={"Accept-Language": "pt",
                                                 "Accept": "text/html"})
    assert r.status_code == 404
    assert "<h1>Não encontrado</h1>" in r.text
    assert f"id do pedido <code>{r.headers['x-request-id']}</code>" in r.text
    assert '<p id="message">no connection &#39;nosuch&#39;</p>' in r.text  # the service's


def test_a_refused_sign_in_says_what_to_do_in_the_readers_language(
        client: TestClient) -> None:
    state = start(client)
    fields = idp_response(client, state, email_verified="")
    r = client.post("/sso/idp/mock/callback", data=fields, headers={"Accept-Language": "es"})
    assert r.status_code == 403
    # the test mapping's deny rule refuses an unverified email
    assert ('<p id="advice">Las reglas de su organización no permiten que esta cuenta inicie '
            "sesión aquí. Consulte a su administrador.</p>") in r.text
    assert "email not verified" in r.text  # the rule's own words, for the administrator
    assert "<h1>Acceso denegado</h1>" in r.text


def test_the_admin_console_stays_english(client: TestClient) -> None:
    page = client.get("/admin/sign-in", headers={"Accept-Language": "pt"})
    assert '<html lang="en">' in page.text and "Sign in" in page.text


def test_created_is_written_in_the_readers_locale_and_utc_without_a_tenant_zone(
        client: TestClient) -> None:
    sign_in(client, return_to="/")

    english = client.get("/").text
    portuguese = client.get("/", headers={"Accept-Language": "pt"}).text

    # the test clock's 2026-11-28 07:00 UTC, without the stored microseconds
    assert '<td id="created">Nov 28, 2026, 7:00:00\u202fAM (UTC)</td>' in english
    assert '<td id="created">28 de nov. de 2026 07:00:00 (UTC)</td>' in portuguese


def test_created_is_in_the_tenants_time_zone_when_it_has_one(
        client: TestClient, ctx: ServiceContext) -> None:
    devices.set_policy(ctx, "hospital", devices.FrontlinePolicy(timezone="Asia/Kolkata"))
    sign_in(client, return_to="/")

    html = client.get("/").text

    assert '<td id="created">Nov 28, 2026, 12:30:00\u202fPM (Asia/Kolkata)</td>' in html


def test_instants_move_to_the_zone_and_follow_the_locale() -> None:
    at = datetime(2026, 11, 28, 7, 5, 9, 123456, tzinfo=UTC)
    assert "Nov 28, 2026, 7:05:09\u202fAM (UTC)" == i18n.format_instant(at, "en", None)
    assert "28 de nov. de 2026 07:05:09 (Europe/Lisbon)" == \
        i18n.format_instant(at.isoformat(), "pt", "Europe/Lisbon")
    assert "28 nov 2026, 12:35:09 (Asia/Kolkata)" == \
        i18n.format_instant(at, "es", "Asia/Kolkata")
    assert "07:05 (UTC)" == i18n.format_clock_time(at, "pt", "Not/AZone")
