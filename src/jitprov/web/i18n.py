"""End-user pages in the reader's language: Babel catalogues and Jinja2's i18n extension.

The catalogues are ``locales/<lang>/LC_MESSAGES/messages.po`` beside this module, compiled in
memory the first time a language is asked for (``babel.messages.pofile`` / ``mofile``): the
``.po`` file is the one source, so there is no compiled file to forget to rebuild. The locale
of a request is the language its tenant's frontline policy names, on a page that knows its
tenant (:func:`use_tenant_locale`: a kiosk, a signed-in account's pages), else the one
negotiated from its ``Accept-Language`` (``babel.Locale.negotiate``; on a kiosk that is the
device browser's language), else English. Dates and times are written with ``babel.dates`` in
that locale and in the tenant's time zone, the zone named. The admin console stays English
(its templates call no gettext).

Python strings shown on those pages are marked with :func:`N_` and translated in the
template, so one extraction (``babel.cfg``) finds them all.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale
from babel.dates import format_datetime, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from jinja2 import pass_context
from jinja2.runtime import Context
from starlette.requests import Request
from starlette.templating import Jinja2Templates

from jitprov.services.devices import SHIPPED_LOCALES

LOCALES_DIR = Path(__file__).with_name("locales")
DOMAIN = "messages"
DEFAULT_LOCALE = "en"
#: the shipped languages, each complete (tests/web/test_i18n.py fails on a missing string);
#: named in services, where a tenant's choice of one is checked
LOCALES = SHIPPED_LOCALES
_MAX_ACCEPT_LANGUAGE = 50  # entries read from one Accept-Language header


def N_(message: str) -> str:
    """Mark a string for extraction; the template translates it when it renders."""
    return message


@lru_cache(maxsize=len(LOCALES))
def translations(locale: str) -> Translations:
    """The compiled catalogue of a shipped locale (English: the messages as written)."""
    if locale not in LOCALES:
        locale = DEFAULT_LOCALE
    with (LOCALES_DIR / locale / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as po:
        catalog = read_po(po, locale=locale, domain=DOMAIN)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(compiled, domain=DOMAIN)


def parse_accept_language(header: str | None) -> list[str]:
    """The languages of an ``Accept-Language`` header, most wanted first (RFC 9110 §12.5.4);
    ``q=0`` means "not this one"."""
    weighted: list[tuple[float, int, str]] = []
    for index, part in enumerate((header or "").split(",")[:_MAX_ACCEPT_LANGUAGE]):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            weighted.append((-quality, index, tag))
    return [tag for _q, _i, tag in sorted(weighted)]


def negotiate(header: str | None) -> str:
    """The shipped locale that best fits an ``Accept-Language`` header, else English
    (``pt-BR`` is served ``pt``). Remembered by header (browsers send a few values, each
    again and again), for headers of a usual length."""
    if header is not None and len(header) > 200:
        return _negotiate(header)
    return _negotiate_remembered(header)


@lru_cache(maxsize=512)
def _negotiate_remembered(header: str | None) -> str:
    return _negotiate(header)


def _negotiate(header: str | None) -> str:
    chosen = Locale.negotiate(parse_accept_language(header), list(LOCALES), sep="-")
    return str(chosen) if chosen is not None else DEFAULT_LOCALE


def locale_of(request: Request) -> str:
    """The request's locale, negotiated once and kept on ``request.state``."""
    locale = getattr(request.state, "locale", None)
    if not isinstance(locale, str):
        locale = negotiate(request.headers.get("accept-language"))
        request.state.locale = locale
    return locale


def use_tenant_locale(request: Request, locale: str) -> None:
    """Serve the request in its tenant's language, when the tenant names a shipped one (the
    frontline policy's ``locale``); with none, :func:`locale_of` negotiates
    ``Accept-Language``. Called before the page renders."""
    if locale in LOCALES:
        request.state.locale = locale


def _request_locale(context: Context) -> str:
    request = context.get("request")
    return locale_of(request) if isinstance(request, Request) else DEFAULT_LOCALE


def format_instant(value: datetime | str | None, locale: str, timezone: str | None) -> str:
    """An instant as a reader of ``locale`` writes it, in ``timezone`` (else UTC), the zone
    named: ``Nov 28, 2026, 7:00:00 AM (Europe/Lisbon)``. Naive values are UTC."""
    if value is None or value == "":
        return ""
    instant = datetime.fromisoformat(value) if isinstance(value, str) else value
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    zone = _zone(timezone)
    text = format_datetime(instant, "medium", tzinfo=zone, locale=locale)
    return f"{text} ({zone.key})"


# Jinja's "newstyle" gettext calls these with the message alone and then fills in the
# variables itself (``%(name)s``, escaped), so a literal percent sign is written ``%%``.
@pass_context
def _gettext(context: Context, message: str) -> str:
    return str(translations(_request_locale(context)).ugettext(message))


@pass_context
def _ngettext(context: Context, singular: str, plural: str, n: int) -> str:
    return str(translations(_request_locale(context)).ungettext(singular, plural, n))


@pass_context
def _page_locale(context: Context) -> Locale:
    return Locale.parse(_request_locale(context))


def format_clock_time(value: datetime, locale: str, timezone: str | None) -> str:
    """A time of day as a reader of ``locale`` writes it, in ``timezone``, the zone named:
    ``15:00 (Europe/Lisbon)``."""
    zone = _zone(timezone)
    instant = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return f"{format_time(instant, 'short', tzinfo=zone, locale=locale)} ({zone.key})"


def _zone(timezone: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@pass_context
def _instant_time(context: Context, value: datetime, timezone: str | None = None) -> str:
    return format_clock_time(value, _request_locale(context), timezone)


@pass_context
def _instant(context: Context, value: datetime | str | None, timezone: str | None = None) -> str:
    return format_instant(value, _request_locale(context), timezone)


def advice_for(codes: dict[str, str]) -> Any:
    """A template global: the advice of these error codes, translated for the request."""

    @pass_context
    def translated(context: Context) -> dict[str, str]:
        catalogue = translations(_request_locale(context))
        return {code: str(catalogue.ugettext(text)) for code, text in codes.items()}

    return translated


def install(templates: Jinja2Templates) -> None:
    """Give the templates ``{% trans %}``, ``_()``, ``ngettext()``, ``page_locale()`` and the
    ``instant`` and ``instant_time`` filters, each reading the locale of the request being
    rendered."""
    env = templates.env
    env.add_extension("jinja2.ext.i18n")
    env.install_gettext_callables(_gettext, _ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals["page_locale"] = _page_locale
    env.filters["instant"] = _instant
    env.filters["instant_time"] = _instant_time
