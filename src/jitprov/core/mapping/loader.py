"""Mapping file text -> :class:`Policy`, or a :class:`MappingError` naming file, line and rule.

The YAML is read with ``yaml.safe_load`` semantics (plain data, no tags that build objects) and
composed first, so that every node's line is known: a validation or compilation error points at
the line of the offending key or list item. Duplicate keys are an error (YAML would silently keep
the last one). Labels of list items are 1-based, like rule ids (``r1``) and line numbers:
``roles.rules[2] (id nurse-by-group)``.

No I/O: the caller reads the file and passes its text.
"""

from __future__ import annotations

import hashlib
import reprlib
from collections.abc import Mapping, Sequence

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from jitprov.core.errors import MappingError
from jitprov.core.mapping.expressions import (
    Expression,
    ExpressionSyntaxError,
    compile_expression,
)
from jitprov.core.mapping.model import MappingModel
from jitprov.core.mapping.policy import (
    DEFAULT_RULE_ID,
    CompiledDenyRule,
    CompiledField,
    CompiledGrantRule,
    Policy,
)
from jitprov.core.mapping.result import PolicySettings
from jitprov.core.text import InvalidText, check_tree

MAX_MAPPING_CHARS = 2_000_000  # 2 x 500 rules of 1000-character expressions, with room to spare

_MERGE_TAG = "tag:yaml.org,2002:merge"


def _short_repr() -> reprlib.Repr:
    # Bounded: YAML aliases can nest shared lists whose full repr is exponentially long.
    short = reprlib.Repr()  # Python 3.11 takes no keyword arguments here
    short.maxlevel, short.maxlist, short.maxdict = 2, 4, 4
    short.maxstring = short.maxother = 60
    return short


_SHORT_REPR = _short_repr()

Path = tuple[str | int, ...]
Lines = dict[Path, int]


def load_policy(text: str, source: str = "<mapping>") -> Policy:
    """Parse, validate and compile a mapping file's text.

    Raises :class:`MappingError` (``source``, 1-based ``line``, ``rule``) for any problem: YAML
    syntax, duplicate keys, unknown fields, wrong types or enum values, bad role or field names,
    duplicate or reserved rule ids, expressions that do not compile. Nothing else escapes.
    """
    if len(text) > MAX_MAPPING_CHARS:
        raise MappingError(
            f"mapping file is {len(text)} characters long, at most {MAX_MAPPING_CHARS} allowed",
            source=source,
        )
    data, lines = _parse_yaml(text, source)
    try:  # YAML refuses raw control characters, but its escapes ("\\0", "\\ud800") make them
        check_tree(data, "")
    except InvalidText as bad:
        raise MappingError(bad.reason, source=source, rule=bad.field or None) from None
    model = _validate(data, lines, source)
    fingerprint = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _compile(model, lines, source, fingerprint)


def _parse_yaml(text: str, source: str) -> tuple[object, Lines]:
    loader: yaml.SafeLoader | None = None
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
        node = loader.get_single_node()
        if node is None:  # an empty file, or only comments
            return None, {}
        # Index before constructing: the constructor flattens `<<` merges in place.
        lines = _index_lines(node, source)
        data: object = loader.construct_document(node)
        return data, lines
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = None if mark is None else mark.line + 1
        context = err.context
        if context and err.context_mark is not None and err.context_mark is not mark:
            context = f"{context} at line {err.context_mark.line + 1}"
        problem = _yaml_problem(context, err.problem)
        raise MappingError(f"invalid YAML: {problem}", source=source, line=line) from None
    except yaml.YAMLError as err:
        # yaml.reader.ReaderError (a control character...) has a position, not a mark.
        position = getattr(err, "position", None)
        line = None if not isinstance(position, int) else text.count("\n", 0, position) + 1
        reason = getattr(err, "reason", None) or "cannot be read"
        raise MappingError(f"invalid YAML: {reason}", source=source, line=line) from None
    except RecursionError:
        raise MappingError("invalid YAML: nested too deeply", source=source) from None
    finally:
        if loader is not None:
            loader.dispose()


def _yaml_problem(context: str | None, problem: str | None) -> str:
    # PyYAML splits its sentences: ("expected a single document", "but found another document"),
    # or ("while parsing a flow sequence", "expected ',' or ']', but got ':'").
    if context and problem and problem.startswith("but "):
        return f"{context}, {problem}"
    if context and problem:
        return f"{problem} ({context})"
    return problem or context or "cannot be parsed"


def _index_lines(root: Node, source: str) -> Lines:
    """Map each key path to its 1-based line; raise on a duplicate key."""
    lines: Lines = {(): root.start_mark.line + 1}
    stack: list[tuple[Path, Node]] = [((), root)]
    # Aliases share nodes: visit each once, or a "billion laughs" file walks forever.
    visited: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, MappingNode):
            first_seen: dict[tuple[str, str], int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG or not isinstance(key_node, ScalarNode):
                    continue  # merged keys may be overridden by design; complex keys fail later
                key: str = key_node.value
                line = key_node.start_mark.line + 1
                first = first_seen.get((key_node.tag, key))
                if first is not None:
                    raise MappingError(
                        f"duplicate key {key!r} (first at line {first})",
                        source=source, line=line, rule=_label((*path, key)),
                    )
                first_seen[(key_node.tag, key)] = line
                lines.setdefault((*path, key), line)
                stack.append(((*path, key), value_node))
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                lines.setdefault((*path, index), item.start_mark.line + 1)
                stack.append(((*path, index), item))
    return lines


def _validate(data: object, lines: Lines, source: str) -> MappingModel:
    try:
        return MappingModel.model_validate({} if data is None else data)
    except ValidationError as err:
        errors = err.errors(include_url=False)
    first = min(errors, key=lambda e: _line_of(e["loc"], lines) or 0)
    rule, message = _describe(first, data)
    raise MappingError(
        message, source=source, line=_line_of(first["loc"], lines), rule=rule
    ) from None


def _describe(error: ErrorDetails, data: object) -> tuple[str | None, str]:
    """``(rule, message)`` for a pydantic error: the rule (or field path) and what is wrong."""
    # pydantic marks dict-key errors with a trailing "[key]": the path is the key itself.
    path = [part for part in error["loc"] if part != "[key]"]
    names_field = error["type"] in ("extra_forbidden", "missing") and bool(path)
    owner = path[:-1] if names_field else path
    rule, inner = _owner(owner, data)
    if names_field:
        name = _label([*inner, path[-1]])
        what = "unknown field" if error["type"] == "extra_forbidden" else "missing required field"
        return rule, f"{what} {name!r}"
    if not path and error["type"] in ("model_type", "dict_type"):
        sections = ", ".join(MappingModel.model_fields)
        return None, f"a mapping file is a YAML mapping of sections ({sections})"
    got = _SHORT_REPR.repr(error.get("input"))
    # pydantic names our model classes ("instance of RolesModel"): say what the YAML needs.
    what = "Input should be a mapping" if error["type"] == "model_type" else error["msg"]
    message = f"{what} (got {got})"
    return rule, f"{_label(inner)}: {message}" if inner else message


def _owner(path: Sequence[str | int], data: object) -> tuple[str | None, Sequence[str | int]]:
    """The rule (or field path) a location belongs to, and the path inside that rule."""
    for section in (("roles", "rules"), ("deny",)):
        n = len(section)
        index = path[n] if tuple(path[:n]) == section and len(path) > n else None
        if isinstance(index, int):
            return _rule_label(section, index, _raw_rule_id(data, section, index)), path[n + 1:]
    return (_label(path) or None), []


def _raw_rule_id(data: object, section: tuple[str, ...], index: int) -> str:
    node: object = data
    for part in section:
        node = node.get(part) if isinstance(node, Mapping) else None
    item = node[index] if isinstance(node, list) and index < len(node) else None
    rule_id = item.get("id") if isinstance(item, Mapping) else None
    return rule_id if isinstance(rule_id, str) else _default_id(section, index)


def _default_id(section: tuple[str, ...], index: int) -> str:
    return f"{'d' if section == ('deny',) else 'r'}{index + 1}"


def _rule_label(section: tuple[str, ...], index: int, rule_id: str) -> str:
    return f"{'.'.join(section)}[{index + 1}] (id {rule_id})"


def _label(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(loc: Sequence[str | int], lines: Lines) -> int | None:
    """Line of the deepest node on ``loc`` that the file has (a missing field: its parent)."""
    path: Path = tuple(part for part in loc if part != "[key]")
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get(())


def _compile(model: MappingModel, lines: Lines, source: str, fingerprint: str) -> Policy:
    def compile_at(text: str, path: Path, rule: str, field: str = "") -> Expression:
        try:
            return compile_expression(text)
        except ExpressionSyntaxError as err:
            prefix = f"{field}: " if field else ""
            raise MappingError(
                f"{prefix}invalid expression {text[:60]!r}: {err}",
                source=source, line=_line_of(path, lines), rule=rule,
            ) from None

    profile = tuple(
        CompiledField(name, compile_at(text, ("profile", name), f"profile.{name}"),
                      lines.get(("profile", name)))
        for name, text in model.profile.items()
    )
    # Without a groups: line the `groups` claim is still read, not mirrored: the
    # protection (an absent groups claim revokes nothing) must not depend on that line.
    groups = CompiledField(
        "groups", compile_at(model.groups or "groups", ("groups",), "groups"),
        lines.get(("groups",)),
    )
    verified_path: Path = ("linking", "email_verified")
    email_verified = CompiledField(
        "email_verified",
        compile_at(model.linking.email_verified, verified_path, "linking.email_verified"),
        lines.get(verified_path),
    )

    ids: dict[str, int | None] = {}

    def claim_id(section: tuple[str, ...], index: int, explicit: str | None) -> str:
        rule_id = explicit if explicit is not None else _default_id(section, index)
        label = _rule_label(section, index, rule_id)
        at = _line_of((*section, index, "id"), lines)
        if rule_id == DEFAULT_RULE_ID:
            raise MappingError(f"rule id {rule_id!r} is reserved for roles.default",
                               source=source, line=at, rule=label)
        if rule_id in ids:
            first = ids[rule_id]
            where = f" (first at line {first})" if first is not None else ""
            raise MappingError(f"duplicate rule id {rule_id!r}{where}",
                               source=source, line=at, rule=label)
        ids[rule_id] = lines.get((*section, index))
        return rule_id

    rules_section = ("roles", "rules")
    rules = []
    for index, grant_rule in enumerate(model.roles.rules):
        rule_id = claim_id(rules_section, index, grant_rule.id)
        label = _rule_label(rules_section, index, rule_id)
        when = None
        if grant_rule.when is not None:
            when = compile_at(grant_rule.when, (*rules_section, index, "when"), label, "when")
        rules.append(CompiledGrantRule(
            rule_id, tuple(grant_rule.grant), when, grant_rule.approval == "required",
            lines.get((*rules_section, index)),
        ))

    deny_section = ("deny",)
    deny = []
    for index, deny_rule in enumerate(model.deny):
        rule_id = claim_id(deny_section, index, deny_rule.id)
        label = _rule_label(deny_section, index, rule_id)
        when_expression = compile_at(deny_rule.when, ("deny", index, "when"), label, "when")
        reason = deny_rule.reason or f"denied by rule {rule_id}"
        deny.append(CompiledDenyRule(rule_id, when_expression, reason, lines.get(("deny", index))))

    settings = PolicySettings(
        on_login=model.on_login,
        link_by_email=model.linking.by_email,
        groups_missing=model.groups_missing,
        mirrors_groups=model.groups is not None,
        rules_reading_groups=frozenset(rule.id for rule in rules if rule.when is not None
                                       and rule.when.may_read("groups")),
    )
    return Policy(
        settings=settings,
        source=source,
        fingerprint=fingerprint,
        email_verified=email_verified,
        profile=profile,
        groups=groups,
        default_roles=tuple(dict.fromkeys(model.roles.default)),  # de-duplicated, in file order
        default_line=lines.get(("roles", "default")),
        rules=tuple(rules),
        deny=tuple(deny),
    )
