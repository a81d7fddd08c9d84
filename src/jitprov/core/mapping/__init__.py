"""The mapping file: YAML -> validated model -> compiled rules.

Public API: :func:`load_policy` (raises :class:`jitprov.core.errors.MappingError` naming
file, line and rule) and :class:`Policy` (``policy.map(claims) -> MappedIdentity``).
"""
