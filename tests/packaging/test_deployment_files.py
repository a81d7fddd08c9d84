"""The deployment files (Dockerfile, .dockerignore, deploy/compose.yaml, deploy/nginx.conf,
docs/deployment.md), checked without Docker: what the image runs as and starts, that nothing
secret is baked in, the shape of the compose stack, that every variable it sets is one jitprov
(or uvicorn) reads, and that nginx accepts the configuration (``nginx -t``, skipped without
nginx unless ``JITPROV_REQUIRE_INTEROP=1``).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn.config
import yaml

from jitprov.protocols.scim import discovery

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
COMPOSE = REPO / "deploy" / "compose.yaml"
EXAMPLE_ENV = REPO / "deploy" / "example.env"
NGINX_CONF = REPO / "deploy" / "nginx.conf"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"
SETTINGS = REPO / "src" / "jitprov" / "settings.py"
REQUIRE_INTEROP = os.environ.get("JITPROV_REQUIRE_INTEROP") == "1"

#: variables the compose file may set that jitprov does not read, and who reads them
FOREIGN_VARIABLES = {
    "FORWARDED_ALLOW_IPS": "uvicorn",  # checked below: uvicorn still reads it
    "POSTGRES_USER": "postgres image", "POSTGRES_DB": "postgres image",
    "POSTGRES_PASSWORD": "postgres image",
    "PROXY_PORT": "compose interpolation only",
}


# -- Dockerfile -------------------------------------------------------------------------------

@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction: comments dropped, continuations joined."""
    joined: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    if pending:
        joined.append(pending)
    out = []
    for instruction in joined:
        keyword, _, args = instruction.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the build stages, in order."""
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in dockerfile_instructions(text):
        if keyword == "FROM":
            parts = rest.split()
            base = parts[0]
            for name, value in args.items():
                base = base.replace("${" + name + "}", value).replace("$" + name, value)
            alias = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            found.append(Stage(base, alias))
        elif keyword == "ARG" and not found:
            name, _, default = rest.partition("=")
            args[name] = default
        elif found:
            found[-1].instructions.append((keyword, rest))
    return args, found


def exec_form(args: str) -> list[str]:
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list)
        return [str(v) for v in value]
    return shlex.split(args)


@pytest.fixture(scope="module")
def docker_stages() -> list[Stage]:
    return stages(DOCKERFILE.read_text("utf-8"))[1]


def test_the_image_is_built_in_stages_from_a_wheel(docker_stages: list[Stage]) -> None:
    assert len(docker_stages) >= 2, "a builder stage and a runtime stage"
    builder, runtime = docker_stages[0], docker_stages[-1]
    assert builder.name is not None
    assert any("pip wheel" in run for run in builder.all("RUN")), "the builder builds a wheel"
    assert runtime.base.startswith("python:3.11-slim"), runtime.base
    copies = runtime.all("COPY")
    assert copies and all(c.startswith(f"--from={builder.name} ") for c in copies), \
        "the runtime stage copies only the builder's result (no source, no build tools)"
    assert not any(re.search(r"\b(gcc|build-essential|-dev\b)", run)
                   for run in runtime.all("RUN")), "no compiler in the runtime stage"


def test_the_runtime_runs_as_an_unprivileged_user(docker_stages: list[Stage]) -> None:
    users = docker_stages[-1].all("USER")
    assert users, "the final stage must set USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user


def test_nothing_is_fetched_with_add_and_no_secret_is_baked_in(
        docker_stages: list[Stage]) -> None:
    for stage in docker_stages:
        for add in stage.all("ADD"):
            assert not re.search(r"(https?|git|ftp)://|git@", add), f"ADD of a remote: {add}"
        for keyword in ("ENV", "ARG", "LABEL"):
            for args in stage.all(keyword):
                assert not re.search(r"SECRET|PASSWORD|TOKEN|JITPROV_DATABASE_URL", args,
                                     re.I), f"{keyword} {args}: settings come at run time"


def test_the_image_serves_and_checks_its_health(docker_stages: list[Stage]) -> None:
    runtime = docker_stages[-1]
    [entrypoint] = runtime.all("ENTRYPOINT")[-1:]
    [cmd] = runtime.all("CMD")[-1:]
    argv = exec_form(entrypoint) + exec_form(cmd)
    assert argv[:2] == ["jitprov", "serve"], argv
    host = argv[argv.index("--host") + 1] if "--host" in argv else "127.0.0.1"
    assert host == "0.0.0.0", "serve must listen beyond the container's loopback"  # noqa: S104
    port = argv[argv.index("--port") + 1]
    [healthcheck] = runtime.all("HEALTHCHECK")[-1:]
    assert f"127.0.0.1:{port}/healthz" in healthcheck, healthcheck


def test_the_build_context_leaves_local_state_out() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text("utf-8").splitlines()
               if line.strip() and not line.startswith("#")}
    for path in (".git", ".venv", "var", ".env", "*.key", "*.db"):
        assert path in ignored, f".dockerignore must leave out {path}"


# -- compose ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text("utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return command if isinstance(command, list) else shlex.split(command)


def app_nodes(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items()
            if command_of(s)[:1] == ["serve"]}


def test_compose_has_postgres_a_migration_two_nodes_and_a_proxy(
        compose: dict[str, Any]) -> None:
    services = compose["services"]
    nodes = app_nodes(compose)
    assert len(nodes) == 2, sorted(nodes)
    assert services["postgres"]["image"].startswith("postgres:")
    [migrate] = [n for n, s in services.items() if command_of(s) == ["db", "upgrade"]]
    assert services[migrate].get("restart") == "no", "the migration runs once"
    assert services[migrate]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, node in nodes.items():
        assert node["depends_on"][migrate]["condition"] == "service_completed_successfully", \
            f"{name} must start after the migration succeeded"
        assert "ports" not in node, f"{name}: only the proxy is published"
    assert "ports" not in services["postgres"]
    [proxy] = [n for n, s in services.items() if str(s.get("image", "")).startswith("nginx:")]
    assert any(str(v).startswith("./nginx.conf:") for v in services[proxy]["volumes"])
    assert services[proxy].get("ports"), "the proxy is the one entry point"
    assert set(services[proxy]["depends_on"]) == set(nodes)


def environment_names(compose: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for service in compose["services"].values():
        env = service.get("environment", {})
        names |= set(env) if isinstance(env, dict) else {e.split("=")[0] for e in env}
    return names


def test_every_variable_compose_sets_is_read_by_someone(compose: dict[str, Any]) -> None:
    read_by_jitprov = set(re.findall(r"JITPROV_[A-Z_]+", SETTINGS.read_text("utf-8")))
    text = COMPOSE.read_text("utf-8")
    interpolated = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {line.split("=")[0] for line in EXAMPLE_ENV.read_text("utf-8").splitlines()
               if line and not line.startswith("#")}
    for name in environment_names(compose) | interpolated | example:
        if name.startswith("JITPROV_"):
            assert name in read_by_jitprov, f"{name} is not a setting (settings.py)"
        else:
            assert name in FOREIGN_VARIABLES, f"{name}: who reads it?"
    assert "FORWARDED_ALLOW_IPS" in inspect.getsource(uvicorn.config.Config.__init__)


def test_the_nodes_share_one_secret_key_and_database_from_the_environment(
        compose: dict[str, Any]) -> None:
    nodes = list(app_nodes(compose).values())
    for name in ("JITPROV_SECRET_KEY", "JITPROV_DATABASE_URL", "JITPROV_BASE_URL"):
        values = {node["environment"][name] for node in nodes}
        assert len(values) == 1, f"{name} must be the same on every node"
    secret = nodes[0]["environment"]["JITPROV_SECRET_KEY"]
    assert re.fullmatch(r"\$\{JITPROV_SECRET_KEY:\?[^}]*\}", secret), \
        "the key comes from the operator's environment, required, never a literal"
    assert "${POSTGRES_PASSWORD:?" in nodes[0]["environment"]["JITPROV_DATABASE_URL"]
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?")
    for line in EXAMPLE_ENV.read_text("utf-8").splitlines():
        if line.startswith(("JITPROV_SECRET_KEY=", "POSTGRES_PASSWORD=")):
            assert line.endswith("="), f"example.env must not carry a secret: {line}"


# -- nginx ------------------------------------------------------------------------------------

def test_nginx_balances_both_nodes_and_forwards_the_request(compose: dict[str, Any]) -> None:
    conf = NGINX_CONF.read_text("utf-8")
    upstream = re.search(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S)
    assert upstream is not None
    servers = re.findall(r"^\s*server\s+([\w.-]+):8000\b", upstream.group(2), re.M)
    assert sorted(servers) == sorted(app_nodes(compose)), servers
    assert f"proxy_pass http://{upstream.group(1)};" in conf
    for header in ("Host $host", "X-Forwarded-Proto $scheme", "X-Forwarded-For $remote_addr"):
        assert re.search(r"proxy_set_header\s+" + r"\s+".join(map(re.escape, header.split())),
                         conf), header
    size = re.search(r"client_max_body_size\s+(\d+)m;", conf)
    assert size is not None and int(size.group(1)) * 1024 * 1024 > discovery.MAX_PAYLOAD_SIZE, \
        "nginx must let a full SCIM Bulk request through (jitprov answers 413 past it)"


def nginx_binary() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def test_nginx_accepts_the_configuration(tmp_path: Path, compose: dict[str, Any]) -> None:
    binary = nginx_binary()
    if binary is None:
        if REQUIRE_INTEROP:
            pytest.fail("nginx is not installed (JITPROV_REQUIRE_INTEROP=1)")
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    conf = NGINX_CONF.read_text("utf-8")
    for node in app_nodes(compose):  # compose's service names resolve only inside compose
        conf, n = re.subn(rf"\bserver\s+{re.escape(node)}:", "server 127.0.0.1:", conf)
        assert n == 1, node
    temp = "".join(f"    {kind}_temp_path {tmp_path / kind};\n"
                   for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = conf.replace("http {\n", "http {\n" + temp, 1)
    rendered = tmp_path / "nginx.conf"
    rendered.write_text(conf, "utf-8")
    result = subprocess.run(
        [binary, "-t", "-p", str(tmp_path), "-c", str(rendered), "-e", str(tmp_path / "err.log"),
         "-g", f"pid {tmp_path / 'nginx.pid'};"],
        capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


# -- docs -------------------------------------------------------------------------------------

def test_the_deployment_guide_names_every_setting_and_is_linked() -> None:
    guide = DEPLOYMENT_DOC.read_text("utf-8")
    for name in sorted(set(re.findall(r"JITPROV_[A-Z_]+", SETTINGS.read_text("utf-8")))):
        assert f"`{name}`" in guide, f"docs/deployment.md does not document {name}"
    assert "docs/deployment.md" in (REPO / "README.md").read_text("utf-8")
