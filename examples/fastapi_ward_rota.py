"""An app behind jitprov, in a dozen lines: nginx (docs/forward-auth/nginx.conf) signs users
in through jitprov and passes X-Jitprov-Token; this app verifies it and checks roles.

    pip install './clients/python[fastapi]' uvicorn   # jitprov-client, from a checkout
    JITPROV_ISSUER=https://sso.hospital.example JITPROV_TENANT=st-marys \
        uvicorn examples.fastapi_ward_rota:app
"""

from __future__ import annotations

import os

from fastapi import Depends, FastAPI

from jitprov_client import Identity, IdentityVerifier
from jitprov_client.fastapi import requires_role

verifier = IdentityVerifier(os.environ.get("JITPROV_ISSUER", "http://127.0.0.1:8000"),
                            tenant=os.environ.get("JITPROV_TENANT", "demo"))
app = FastAPI(title="Ward rota")


@app.get("/rota")
def rota(who: Identity = Depends(requires_role("nurse", "charge-nurse",
                                               verifier=verifier))) -> dict[str, object]:
    return {"hello": who.name, "roles": sorted(who.roles), "shifts": ["07:00-19:00"]}


@app.get("/rota/edit")
def edit(who: Identity = Depends(requires_role("charge-nurse",
                                               verifier=verifier))) -> dict[str, str]:
    return {"editor": who.email or who.sub}
