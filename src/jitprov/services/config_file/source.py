"""Reading a configuration file: YAML with its line numbers, the strict model, secret
references, mapping files, and every check that needs no database, so a file is refused
whole before anything is written.

Every refusal is one :class:`ConfigFileError`: ``file:line: key.path: message``. The line
comes from the composed YAML node the key path leads to (pydantic's error location walked
through the node tree).

A ``${NAME}`` reference never names one of jitprov's own settings (``JITPROV_*``) or
libpq's (``PG*``): the process that applies a file holds the secret key and the database
credentials, and a reference to them in, say, an OIDC client secret would send them to
whoever runs that IdP.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError

from jitprov.core.domains import normalise_domain
from jitprov.core.errors import InvalidInput, MappingError
from jitprov.core.mapping import load_policy
from jitprov.protocols.oidc import OidcConfig
from jitprov.protocols.saml import SamlConfig
from jitprov.services import devices, webhooks
from jitprov.services.config_file.model import ConfigFile, Connection, Tenant

Loc = tuple[str | int, ...]
_REF = re.compile(r"^\$\{([A-Z_][A-Z0-9_]*)\}$")
#: the largest configuration or mapping file read
MAX_FILE_BYTES = 4 * 1024 * 1024
#: the deepest nesting of a file's YAML (the format itself needs 8)
MAX_DEPTH = 32
#: environment variables a reference may not name: jitprov's settings and libpq's
REFUSED_ENV_PREFIXES = ("JITPROV_", "PG")
#: the prefix of the references ``jitprov export`` writes
ENV_PREFIX = "CFG_"
_TOKEN_LIKE = re.compile(r"^(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_-]{16,}$")


class ConfigFileError(InvalidInput):
    """A configuration file refused: ``file:line: key.path: message`` (one line)."""

    code = "invalid_config_file"

    def __init__(self, source: str, line: int | None, path: str, message: str) -> None:
        self.source, self.line, self.path = source, line, path
        self.message = " ".join(message.split())
        where = source if line is None else f"{source}:{line}"
        super().__init__(f"{where}: {path + ': ' if path else ''}{self.message}")


def key_path(loc: Loc) -> str:
    """``tenants.hospital.webhooks[0].secret``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class SourceMap:
    """Line numbers of a composed YAML document, found by key path."""

    def __init__(self, name: str, root: yaml.Node | None) -> None:
        self.name = name
        self._root = root

    def node(self, loc: Loc) -> tuple[yaml.Node | None, Loc]:
        """The deepest node ``loc`` leads to, and the part of ``loc`` that matched (pydantic
        adds union tags such as ``str`` that are no keys; a missing key matches nothing)."""
        node: yaml.Node | None = self._root
        matched: Loc = ()
        key_node: yaml.Node | None = None
        for part in loc:
            if part == "[key]" and key_node is not None:
                return key_node, matched
            found = None
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                        found, key_node = v, k
                        break
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) \
                    and 0 <= part < len(node.value):
                found = node.value[part]
            if found is None:
                continue
            node, matched = found, (*matched, part)
        return node, matched

    def error(self, loc: Loc, message: str) -> ConfigFileError:
        node, matched = self.node(loc)
        path = list(matched)
        if loc and loc[-1] not in matched and loc[-1] != "[key]" and isinstance(loc[-1], str) \
                and loc[-1][:1].islower() and "[" not in loc[-1]:
            path.append(loc[-1])  # a missing key: named, at its mapping's line
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigFileError(self.name, line, key_path(tuple(path)), message)

    def scalar_offset(self, loc: Loc) -> int | None:
        """For a block scalar (``|``, ``>``): the file line before its first content line."""
        node, matched = self.node(loc)
        if matched != loc or not isinstance(node, yaml.ScalarNode) or node.style not in "|>" \
                or not node.style:
            return None
        return node.start_mark.line + 1


@dataclass(frozen=True)
class ConfigSource:
    """A configuration file that passed every check that needs no database."""

    name: str
    model: ConfigFile
    lines: SourceMap
    #: sha256 of the file, first 12 hex digits: the audit actor is ``apply:<digest>``
    digest: str
    #: (tenant, connection) -> (mapping text, its source for messages)
    mappings: dict[tuple[str, str], tuple[str, str]]
    #: (tenant, domain as written) -> the domain's stored (IDNA) form
    domains: dict[tuple[str, str], str]
    #: the resolved secret references, by key path; never shown
    secrets: dict[Loc, str] = field(repr=False)
    #: (tenant, index) -> the webhook's URL (its ``${NAME}`` reference resolved); shown only
    #: through :func:`shown_url`
    webhook_urls: dict[tuple[str, int], str] = field(repr=False, default_factory=dict)

    @property
    def actor(self) -> str:
        return f"apply:{self.digest}"

    def error(self, loc: Loc, message: str) -> ConfigFileError:
        return self.lines.error(loc, message)


def load_source(data: bytes, name: str, *, base_dir: Path | None,
                env: Mapping[str, str]) -> ConfigSource:
    """Parse and check a configuration file: YAML, the model, mapping files (relative to
    ``base_dir``; none when it is None), every mapping compiled, every connection's settings
    checked by its kind, the secret references resolved from ``env``. Raises
    ConfigFileError."""
    if len(data) > MAX_FILE_BYTES:
        raise ConfigFileError(name, None, "", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(name, None, "", f"not UTF-8 text ({exc.reason})") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        lines = SourceMap(name, root)
        _refuse_duplicate_keys(lines, root)  # and aliases, before expanding them
        raw = yaml.safe_load(text)
    except RecursionError:  # PyYAML composes recursively: far deeper than MAX_DEPTH
        raise ConfigFileError(name, None, "", f"nested more than {MAX_DEPTH} levels "
                                              "deep") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigFileError(name, mark.line + 1 if mark else None, "",
                              f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ConfigFileError(name, None, "", f"not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigFileError(name, 1, "", "the file must be a mapping with version and "
                                          "tenants")
    try:
        model = ConfigFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise lines.error(tuple(first["loc"]), first["msg"]) from None
    secrets: dict[Loc, str] = {}
    mappings: dict[tuple[str, str], tuple[str, str]] = {}
    domains: dict[tuple[str, str], str] = {}
    webhook_urls: dict[tuple[str, int], str] = {}
    for slug, tenant in model.tenants.items():
        at: Loc = ("tenants", slug)
        for index, hook in enumerate(tenant.webhooks):
            webhook_urls[(slug, index)] = _resolve(
                lines, (*at, "webhooks", index, "url"), hook.url, env) \
                if _REF.match(hook.url) else hook.url
        _check_tenant(lines, at, tenant, domains, slug, webhook_urls)
        for conn_slug, conn in tenant.connections.items():
            where = (*at, "connections", conn_slug)
            _check_connection(lines, where, conn, env, secrets)
            mappings[(slug, conn_slug)] = _mapping(lines, where, conn, base_dir)
        for index, hook in enumerate(tenant.webhooks):
            where = (*at, "webhooks", index, "secret")
            value = _resolve(lines, where, hook.secret, env)
            try:
                webhooks.check_secret(value)
            except InvalidInput as exc:
                raise lines.error(where, f"{hook.secret}: {exc}") from None
            secrets[where] = value
    digest = hashlib.sha256(data).hexdigest()[:12]
    return ConfigSource(name=name, model=model, lines=lines, digest=digest,
                        mappings=mappings, domains=domains, secrets=secrets,
                        webhook_urls=webhook_urls)


def _refuse_duplicate_keys(lines: SourceMap, root: yaml.Node | None) -> None:
    """A key given twice (YAML keeps the last silently), aliases (``*name``: a node met
    twice, which could also expand exponentially or refer to itself) and nesting deeper
    than MAX_DEPTH. Walks the tree with a stack of its own, in document order."""
    visited: set[int] = set()
    stack: list[tuple[yaml.Node, Loc]] = [] if root is None else [(root, ())]
    while stack:
        node, at = stack.pop()
        if id(node) in visited:
            raise ConfigFileError(lines.name, node.start_mark.line + 1, key_path(at),
                                  "YAML aliases (*name) are not supported: write the value "
                                  "out")
        visited.add(id(node))
        if len(at) > MAX_DEPTH:
            raise ConfigFileError(lines.name, node.start_mark.line + 1, "",
                                  f"nested more than {MAX_DEPTH} levels deep")
        children: list[tuple[yaml.Node, Loc]] = []
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                if name in seen:
                    raise ConfigFileError(lines.name, key.start_mark.line + 1,
                                          key_path((*at, name)), "this key is given twice")
                seen.add(name)
                children.append((value, (*at, name)))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*at, index)) for index, item in enumerate(node.value)]
        stack.extend(reversed(children))


def _check_tenant(lines: SourceMap, at: Loc, tenant: Tenant,
                  domains: dict[tuple[str, str], str], slug: str,
                  webhook_urls: dict[tuple[str, int], str]) -> None:
    policy = tenant.policy
    if policy.dormant_warn_days is not None and policy.dormant_deactivate_days is not None \
            and policy.dormant_warn_days >= policy.dormant_deactivate_days:
        raise lines.error((*at, "policy", "dormant_warn_days"),
                          "the warning must come before the deactivation")
    try:
        devices.check_policy(devices.FrontlinePolicy(**{
            **tenant.frontline.model_dump(), "shifts": tuple(tenant.frontline.shifts)}))
    except InvalidInput as exc:
        raise lines.error((*at, "frontline"), str(exc)) from None
    stored: dict[str, str] = {}
    for domain, connection in tenant.domains.items():
        where = (*at, "domains", domain)
        try:
            name = normalise_domain(domain)
        except InvalidInput as exc:
            raise lines.error((*where, "[key]"), str(exc)) from None
        if name in stored:
            raise lines.error((*where, "[key]"), f"the same domain as {stored[name]}")
        if connection not in tenant.connections:
            raise lines.error(where, f"no connection {connection!r} in this tenant's "
                                     "connections")
        stored[name] = domain
        domains[(slug, domain)] = name
    urls: set[str] = set()
    for index, hook in enumerate(tenant.webhooks):
        where = (*at, "webhooks", index)
        url = webhook_urls[(slug, index)]
        if url in urls:
            raise lines.error((*where, "url"), "another webhook of the tenant has this URL")
        urls.add(url)
        try:
            webhooks.check_url(url)
        except InvalidInput as exc:
            raise lines.error((*where, "url"), str(exc)) from None
        try:
            webhooks.check_event_types(hook.events)
        except InvalidInput as exc:
            raise lines.error((*where, "events"), str(exc)) from None


def settings_config(conn: Connection) -> dict[str, object]:
    """The stored configuration the file's settings make (secret references left out)."""
    if conn.oidc is not None:
        return conn.oidc.model_dump(exclude={"client_secret"})
    if conn.saml is not None:
        return conn.saml.model_dump()
    return {}


def _check_connection(lines: SourceMap, at: Loc, conn: Connection, env: Mapping[str, str],
                      secrets: dict[Loc, str]) -> None:
    config = settings_config(conn)
    if conn.oidc is not None:
        where: Loc = (*at, "oidc")
        try:
            OidcConfig.model_validate(config)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise lines.error((*where, *first["loc"]), first["msg"]) from None
        ref = conn.oidc.client_secret
        if conn.oidc.token_auth_method == "private_key_jwt":  # noqa: S105 - a method name
            if ref is not None:
                raise lines.error((*where, "client_secret"), "private_key_jwt uses a key "
                                  "jitprov makes: no client_secret")
        elif ref is None:
            raise lines.error((*where, "client_secret"),
                              f"{conn.oidc.token_auth_method} needs a client_secret "
                              "reference such as ${CFG_..._CLIENT_SECRET}")
        else:
            secrets[(*where, "client_secret")] = _resolve(
                lines, (*where, "client_secret"), ref, env)
    elif conn.saml is not None:
        try:
            SamlConfig.parse(config)
        except InvalidInput as exc:
            named = re.match(r"SAML connection (\w+):", str(exc))
            raise lines.error((*at, "saml", *((named.group(1),) if named else ())),
                              str(exc)) from None


def _resolve(lines: SourceMap, loc: Loc, ref: str, env: Mapping[str, str]) -> str:
    match = _REF.match(ref)
    assert match is not None  # noqa: S101 - the model's pattern
    name = match.group(1)
    if name.startswith(REFUSED_ENV_PREFIXES):
        raise lines.error(loc, f"{ref}: a reference may not name JITPROV_* or PG* "
                               "variables (jitprov's own settings and database "
                               f"credentials); use another name, such as {ENV_PREFIX}...")
    value = env.get(name)
    if not value:
        raise lines.error(loc, f"the environment variable {name} is not set")
    return value


def _mapping(lines: SourceMap, at: Loc, conn: Connection,
             base_dir: Path | None) -> tuple[str, str]:
    where: Loc = (*at, "mapping")
    if isinstance(conn.mapping, str):
        text, source = conn.mapping, f"{lines.name}: {key_path(where)}"
        offset = lines.scalar_offset(where)
    else:
        where = (*where, "file")
        if base_dir is None:
            raise lines.error(where, "mapping files are read by `jitprov apply -f` only; "
                                     "give the mapping inline")
        text = _mapping_file(lines, where, base_dir, conn.mapping.file)
        source, offset = conn.mapping.file, None
    try:
        load_policy(text, source)
    except MappingError as exc:
        if offset is not None and exc.line is not None:  # a line of this file
            raise ConfigFileError(lines.name, offset + exc.line, key_path(where),
                                  f"{exc.rule + ': ' if exc.rule else ''}{exc.message}"
                                  ) from None
        raise lines.error(where, str(exc)) from None
    return text, source


def _mapping_file(lines: SourceMap, where: Loc, base_dir: Path, name: str) -> str:
    """A mapping file: a relative path that stays inside ``base_dir`` (symbolic links
    resolved), a regular file, at most MAX_FILE_BYTES, UTF-8."""
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise lines.error(where, f"{name}: give a path relative to the configuration "
                                 "file's directory, without '..'")
    base = base_dir.resolve()
    path = (base / name).resolve()
    if not path.is_relative_to(base):
        raise lines.error(where, f"{name} leads outside the configuration file's directory")
    try:
        return read_bounded(path, regular=True).decode("utf-8")
    except ConfigFileError as exc:
        raise lines.error(where, f"{name}: {exc.message}") from None
    except UnicodeDecodeError as exc:
        raise lines.error(where, f"{name}: not UTF-8 text ({exc.reason})") from None


def read_bounded(path: Path, *, regular: bool = False) -> bytes:
    """At most MAX_FILE_BYTES of ``path`` (a longer file is refused, never read whole);
    with ``regular``, only a regular file (no device, FIFO or directory). Raises
    ConfigFileError."""
    try:
        fd = os.open(path, os.O_RDONLY | (os.O_NONBLOCK if regular else 0))
    except OSError as exc:
        raise ConfigFileError(str(path), None, "", f"cannot read it: "
                                                   f"{exc.strerror or exc}") from None
    try:
        if regular and not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigFileError(str(path), None, "", "not a regular file")
        chunks: list[bytes] = []
        left = MAX_FILE_BYTES + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 20))):
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ConfigFileError(str(path), None, "", f"cannot read it: "
                                                   f"{exc.strerror or exc}") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_FILE_BYTES:
        raise ConfigFileError(str(path), None, "", f"larger than {MAX_FILE_BYTES} bytes")
    return data


def env_name(*parts: str) -> str:
    """``CFG_HOSPITAL_OKTA_CLIENT_SECRET`` from ("hospital", "okta", "client_secret")."""
    return ENV_PREFIX + "_".join(re.sub(r"[^A-Z0-9]+", "_", p.upper()) for p in parts)


def reference(*parts: str) -> str:
    return "${" + env_name(*parts) + "}"


def is_reference(value: str) -> bool:
    return _REF.match(value) is not None


def carries_secret(url: str) -> bool:
    """A URL that may carry a token: a query, a fragment, user info, or a path segment
    that looks like one (16 or more letters and digits, both present, as in Slack's and
    Discord's webhook URLs)."""
    parts = urlsplit(url)
    return bool(parts.query or parts.fragment or "@" in parts.netloc
                or any(_TOKEN_LIKE.match(s) for s in parts.path.split("/")))


def shown_url(url: str) -> str:
    """A webhook URL fit for a plan line or an error: no query, fragment or user info, and
    a token-like path segment shown as ``...``."""
    parts = urlsplit(url)
    path = "/".join("..." if _TOKEN_LIKE.match(s) else s for s in parts.path.split("/"))
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], path=path, query="",
                          fragment="").geturl()


__all__: Sequence[str] = ("ConfigFileError", "ConfigSource", "carries_secret", "env_name",
                          "is_reference", "key_path", "load_source", "read_bounded",
                          "reference", "settings_config", "shown_url")
