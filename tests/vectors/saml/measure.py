"""CPU time of one ``validate_response`` on an ~8 KB signed response (not a test).

Run: ``.venv/bin/python -m tests.vectors.saml.measure [calls]``. Prints the response size and
the CPU microseconds per call (process time, so a noisy neighbour does not count), best of 5
rounds, plus where the time goes (parse + structure vs. signature verification).
"""

from __future__ import annotations

import base64
import sys
import time

from tests.vectors.saml.generate import (
    IDP_ENTITY_ID,
    IDP_SSO_URL,
    NOW,
    REQUEST_ID,
    SP_BASE_URL,
    SP_SLUG,
    read_key,
    serialize,
    signed_assertion,
)

from jitprov.protocols.saml import SamlConfig, sp_settings, validate_response
from jitprov.protocols.saml.parsing import parse_xml


def _per_call_us(fn: object, calls: int) -> float:
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        for _ in range(calls):
            fn()  # type: ignore[operator]
        best = min(best, (time.process_time() - start) / calls * 1e6)
    return best


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    groups = tuple(f"Department {i:02d} - Clinical Staff Group" for i in range(40))
    data = serialize(signed_assertion(groups=groups))
    field = base64.b64encode(data).decode()
    sp = sp_settings(SP_BASE_URL, SP_SLUG, certificate=read_key("sp.crt"),
                     private_key_pem=read_key("sp.key"))
    config = SamlConfig(idp_entity_id=IDP_ENTITY_ID, idp_sso_url=IDP_SSO_URL,
                        idp_certs=(read_key("idp.crt"),), want_authn_requests_signed=True)

    def validate() -> None:
        validate_response(field, sp=sp, config=config, expected_in_response_to=REQUEST_ID,
                          now=NOW)

    validate()  # load and cache the pinned certificate
    total = _per_call_us(validate, calls)
    parse = _per_call_us(lambda: parse_xml(base64.b64decode(field)), calls)
    print(f"response: {len(data)} bytes ({len(groups)} group values)")
    print(f"validate_response: {total:.0f} us CPU per call (best of 5 x {calls})")
    print(f"  of which base64 + hardened parse: {parse:.0f} us")


if __name__ == "__main__":
    main()
