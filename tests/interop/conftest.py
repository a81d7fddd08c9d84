"""Interop fixtures: a real OpenID Provider (panva/oidc-provider on Node.js) on loopback.

The OP's npm dependencies are installed on first use from the committed lock file. Without a
usable Node.js/npm the interop tests are skipped, unless ``JITPROV_REQUIRE_INTEROP=1`` (CI),
where they fail.
"""

from __future__ import annotations

import os

import pytest

from tests.interop.oidc_op import OidcOpError, OidcOpUnavailable, ensure_installed

REQUIRE_INTEROP = os.environ.get("JITPROV_REQUIRE_INTEROP") == "1"


@pytest.fixture(scope="session")
def oidc_op_available() -> None:
    """Ensures ``OpenIdProvider`` can start: Node.js is there and oidc-provider is installed."""
    try:
        ensure_installed()
    except (OidcOpUnavailable, OidcOpError) as exc:
        if REQUIRE_INTEROP:
            pytest.fail(f"interop OP unavailable (JITPROV_REQUIRE_INTEROP=1): {exc}")
        pytest.skip(f"interop OP unavailable: {exc}")
