"""The mapping file as data: pydantic models of the YAML, before compilation.

The models check shape only (unknown fields, types, names, enums, sizes); the loader then checks
what spans several nodes (unique rule ids) and compiles the expressions. Every section is
optional: an empty file is a valid policy that maps nothing and grants nothing.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from jitprov.core.identity import MAX_ROLE_NAME, ROLE_NAME_CHARS
from jitprov.core.mapping.expressions import MAX_EXPRESSION_LENGTH
from jitprov.core.mapping.result import GroupsMissing, LinkByEmail, OnLogin

MAX_RULES = 500  # per list: roles.rules, deny

ExpressionText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EXPRESSION_LENGTH)]
#: the role-name rule of ``core/identity.py`` (one definition for the mapping and the admins)
RoleName = Annotated[str, StringConstraints(pattern=rf"^{ROLE_NAME_CHARS}+$",
                                            max_length=MAX_ROLE_NAME)]
RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9._-]+$", max_length=100)]
FieldName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=100)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=500)]


class _Section(BaseModel):
    # strict: YAML's `when: yes` is a bool, not the expression "yes"; say so rather than coerce.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _drop_null_sections(data: object, sections: tuple[str, ...]) -> object:
    # `roles:` with every child commented out is null in YAML; read it as the empty section.
    # Only containers: a null `when:` must stay an error, not become "always matches".
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if not (k in sections and v is None)}
    return data


class GrantRuleModel(_Section):
    """``roles.rules[]``: grant these roles when ``when`` is truthy (always, without ``when``)."""

    id: RuleId | None = None
    grant: Annotated[list[RoleName], Field(min_length=1)]
    when: ExpressionText | None = None
    approval: Literal["required", "none"] = "none"

    @field_validator("when", mode="before")
    @classmethod
    def _when_is_not_null(cls, value: object) -> object:
        # An empty `when:` is null in YAML: refuse it rather than read it as "always matches".
        if value is None:
            raise ValueError("an empty `when` matches nobody; leave it out to match everyone")
        return value


class RolesModel(_Section):
    """``roles``: ``default`` roles for every identity not denied, and the ``rules``."""

    default: list[RoleName] = Field(default_factory=list)
    rules: Annotated[list[GrantRuleModel], Field(max_length=MAX_RULES)] = Field(
        default_factory=list
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: object) -> object:
        return _drop_null_sections(data, ("default", "rules"))


class DenyRuleModel(_Section):
    """``deny[]``: refuse the login when ``when`` is truthy (or cannot be evaluated)."""

    id: RuleId | None = None
    when: ExpressionText
    reason: Reason | None = None


class LinkingModel(_Section):
    """``linking``: whether a new IdP identity may take over an account with the same email."""

    by_email: LinkByEmail = "never"
    email_verified: ExpressionText = "email_verified"

    @field_validator("by_email", mode="before")
    @classmethod
    def _accept_verified_only(cls, value: object) -> object:
        # design.md's first draft spelled it `verified_only`; both mean the same policy.
        return "verified_email" if value == "verified_only" else value


class MappingModel(_Section):
    """The whole mapping file."""

    profile: dict[FieldName, ExpressionText] = Field(default_factory=dict)
    groups: ExpressionText | None = None
    roles: RolesModel = Field(default_factory=RolesModel)
    deny: Annotated[list[DenyRuleModel], Field(max_length=MAX_RULES)] = Field(
        default_factory=list
    )
    linking: LinkingModel = Field(default_factory=LinkingModel)
    on_login: OnLogin = "sync"
    groups_missing: GroupsMissing = "keep"

    @model_validator(mode="before")
    @classmethod
    def _null_is_empty(cls, data: object) -> object:
        return _drop_null_sections(data, ("profile", "roles", "deny", "linking"))
