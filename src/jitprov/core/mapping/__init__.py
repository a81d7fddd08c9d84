"""The mapping file: YAML -> validated model -> compiled rules.

Public API: :func:`load_policy` (raises :class:`jitprov.core.errors.MappingError` naming
file, line and rule) and :class:`Policy` (``policy.map(claims) -> MappedIdentity``).
"""

from jitprov.core.mapping.loader import load_policy
from jitprov.core.mapping.policy import Policy
from jitprov.core.mapping.result import (
    Denial,
    MappedIdentity,
    PolicySettings,
    RuleGrantIntent,
    TraceEntry,
)

__all__ = [
    "Denial",
    "MappedIdentity",
    "Policy",
    "PolicySettings",
    "RuleGrantIntent",
    "TraceEntry",
    "load_policy",
]
