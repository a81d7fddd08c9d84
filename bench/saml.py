"""The SAML ACS path in-process: ``complete_saml_login`` = spend the login request, verify the
signed Response (8 KB-class, signed assertion, 20 groups), remember the assertion ID (replay
cache), provision_on_login with a session; SQLite and PostgreSQL, 1 caller.

The AuthnRequests (``start_login``) and the IdP's signatures are made before the clock
starts; HTTP parsing of the ACS form is not included (see performance-notes.md for it).
"""

from __future__ import annotations

import base64
from collections.abc import Callable

from bench.oidc import _measure
from bench.provision import databases
from jitprov.protocols.saml import validate_response
from jitprov.services import admin
from jitprov.services.context import ServiceContext
from jitprov.services.login.kinds import start_login
from jitprov.services.login.saml import complete_saml_login, connection_config, sp_for
from jitprov.services.secretbox import SecretBox
from jitprov.store.database import Database
from jitprov.testing.saml_idp import FakeSamlIdp, request_id_of

BASE_URL = "https://sso.bench.example"
ACS = f"{BASE_URL}/sso/bench/saml/acs"
AUDIENCE = f"{BASE_URL}/sso/bench/saml/metadata"
GROUPS = ["Nurses", "Ward 3", "All Staff"] + [f"Group {i}" for i in range(17)]
MAPPING = """\
profile:
  email: mail
  name: displayName
  department: ou
groups: isMemberOf
roles:
  default: [staff]
  rules:
    - {id: nurses, grant: [nurse], when: "contains(isMemberOf, 'Nurses')"}
    - {id: charge, grant: [charge-nurse], when: "contains(isMemberOf, 'Charge Nurses')"}
    - {id: pharmacy, grant: [pharmacist], when: "contains(isMemberOf, 'Pharmacists')"}
"""


def _attributes(n: int) -> dict[str, list[str]]:
    return {"mail": [f"user{n}@hospital.example"], "displayName": [f"User {n}"],
            "ou": ["Ward 3"], "isMemberOf": GROUPS}


def run(*, ops: int, postgres_url: str) -> list[dict[str, object]]:
    idp = FakeSamlIdp()
    rows: list[dict[str, object]] = []
    for db_name, url, cleanup in databases(postgres_url):
        db = Database.connect(url, pool_size=4)
        db.upgrade()
        rows += _run_on(ServiceContext(db=db, secretbox=SecretBox("bench")), db_name, idp, ops)
        db.dispose()
        cleanup()
    return rows


def add_connection(ctx: ServiceContext, idp: FakeSamlIdp) -> None:
    """Tenant ``bench`` with SAML connection ``bench`` to ``idp``, mapped by MAPPING."""
    admin.create_tenant(ctx, "bench")
    admin.add_saml_connection(ctx, tenant="bench", slug="bench", metadata_xml=idp.metadata(),
                              metadata_url=None, mapping=MAPPING, mapping_source="bench.yaml")


def prepare(ctx: ServiceContext, idp: FakeSamlIdp,
            subjects: range) -> list[tuple[str, str, str]]:
    """(RelayState, binding cookie, signed SAMLResponse) of one started login per subject."""
    out = []
    for n in subjects:
        started = start_login(ctx, "bench", "/", base_url=BASE_URL, dev_mode=False)
        out.append((started.state, started.cookie, idp.response(
            acs_url=ACS, audience=AUDIENCE, subject=f"user-{n}", attributes=_attributes(n),
            in_response_to=request_id_of(started.location), now=ctx.clock())))
    return out


def acs(ctx: ServiceContext, logins: list[tuple[str, str, str]]) -> Callable[[int], object]:
    """The ACS of the i-th prepared login (``complete_saml_login``)."""
    def one(i: int) -> object:
        state, cookie, response = logins[i]
        return complete_saml_login(ctx, "bench", response, state, browser=cookie,
                                   base_url=BASE_URL, request_id=None)
    return one


def _run_on(ctx: ServiceContext, db_name: str, idp: FakeSamlIdp,
            ops: int) -> list[dict[str, object]]:
    add_connection(ctx, idp)

    rows: list[dict[str, object]] = []
    # warm the caches: policy, SP settings, certificate
    acs(ctx, prepare(ctx, idp, range(ops, ops + 1)))(0)
    for scenario in ("first login", "returning login (no change)"):
        rows.append({"scenario": f"SAML ACS, {scenario}", "db": db_name, "clients": 1,
                     **_measure(acs(ctx, prepare(ctx, idp, range(ops))), range(ops))})
    if db_name == "sqlite":
        conn = ctx.connections.get("bench")
        config = connection_config(conn)
        sp = sp_for(ctx, conn, config, BASE_URL)
        logins = prepare(ctx, idp, range(ops))
        ids = [request_id_of_response(r) for _, _, r in logins]
        size = len(base64.b64decode(logins[0][2])) / 1024

        def validate(i: int) -> object:
            return validate_response(logins[i][2], sp=sp, config=config,
                                     expected_in_response_to=ids[i], now=ctx.clock())

        rows.append({"scenario": f"SAML Response validation only ({size:.1f} KB)",
                     "db": "-", "clients": 1, **_measure(validate, range(ops))})
    return rows


def request_id_of_response(response: str) -> str:
    xml = base64.b64decode(response).decode()
    start = xml.index('InResponseTo="') + len('InResponseTo="')
    return xml[start:xml.index('"', start)]
