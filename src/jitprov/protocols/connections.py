"""The registry of connection kinds: a dict, not an if-chain.

Each kind satisfies :class:`ConnectionKind`. ``dev_only`` kinds (the demo IdP) are refused by
``jitprov serve`` outside dev mode.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from jitprov.protocols.mock import MockKind
from jitprov.protocols.oidc import OidcKind
from jitprov.protocols.saml import SamlKind


class ConnectionKind(Protocol):
    name: str
    dev_only: bool

    def validate_config(self, config: Mapping[str, object]) -> None:
        """Raise ``InvalidInput`` naming the bad field."""


CONNECTION_KINDS: dict[str, ConnectionKind] = {
    "mock": MockKind(),
    "oidc": OidcKind(),
    "saml": SamlKind(),
}
