"""The jitprov-client distribution stands alone: built from clients/python, installed into a
fresh virtualenv with nothing but its own dependencies, it verifies a token a real jitprov
signed, and brings none of the server's libraries."""

from __future__ import annotations

import email.parser
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from jitprov.services.context import ServiceContext
from jitprov.testing.builders import setup_connection
from tests.conftest import Clock
from tests.web.helpers import make_client, sign_in

pytestmark = pytest.mark.slow  # a build and a virtualenv: several seconds

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "clients" / "python"
UV = Path(sys.executable).with_name("uv")  # pinned in the virtualenv by the Makefile
#: what an app must not get by installing the client: the server and its heavy dependencies
SERVER_ONLY = ["jitprov", "sqlalchemy", "alembic", "psycopg", "lxml", "xmlsec", "uvicorn",
               "typer", "starlette", "fastapi", "django", "webauthn", "scim2_models"]

#: run by the fresh virtualenv's Python (isolated mode: nothing of this checkout on its path)
PROBE = """
import importlib, importlib.metadata, importlib.util, json, sys
import httpx
from jitprov_client import IdentityVerifier, InvalidIdentity, JitprovWsgiMiddleware

given = json.load(sys.stdin)
def serve(request):
    if request.url.path != "/.well-known/jwks.json":
        return httpx.Response(404)
    return httpx.Response(200, json=given["jwks"])
http = httpx.Client(transport=httpx.MockTransport(serve))
verifier = IdentityVerifier("http://testserver", tenant="hospital", http=http)
who = verifier.verify(given["token"], now=given["now"])
try:
    verifier.verify(given["token"], now=given["now"] + 600)
    expired = "accepted"
except InvalidIdentity:
    expired = "refused"
seen = {}
def app(environ, start_response):
    seen["email"] = getattr(environ["jitprov.identity"], "email", None)
    start_response("200 OK", [])
    return [b""]
JitprovWsgiMiddleware(app, verifier)({"HTTP_X_JITPROV_TOKEN": given["token"]}, lambda *a: None)
refusals = {}
for module in ("jitprov_client.fastapi", "jitprov_client.django"):
    try:
        importlib.import_module(module)
    except ImportError as exc:
        refusals[module] = str(exc)
print(json.dumps({
    "sub": who.sub, "roles": sorted(who.roles), "expired": expired, "wsgi": seen["email"],
    "present": [m for m in given["server_only"] if importlib.util.find_spec(m) is not None],
    "distributions": sorted(d.metadata["Name"].lower() for d in importlib.metadata.distributions()),
    "refusals": refusals,
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client's wheel, built from a copy of clients/python (the build leaves its
    egg-info and build/ in the copy, not in the checkout)."""
    source = tmp_path_factory.mktemp("client") / "python"
    shutil.copytree(CLIENT, source, ignore=shutil.ignore_patterns(
        "tests", "build", "dist", "*.egg-info", "__pycache__"))
    out = source / "dist"
    subprocess.run([str(UV), "build", "--quiet", "--wheel", "--out-dir", str(out), str(source)],
                   check=True, capture_output=True, timeout=600)
    [built] = out.glob("jitprov_client-0.1.0-py3-none-any.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv holding the wheel and its dependencies only, at the versions of
    requirements/run.lock (from uv's cache when it has them, else from the index)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "v")],
                   check=True, capture_output=True, timeout=300)
    python = root / "v" / "bin" / "python"
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*==[^\s;\\]+)",
                      (REPO / "requirements" / "run.lock").read_text("utf-8"), re.M)
    constraints = root / "constraints.txt"
    constraints.write_text("\n".join(pins) + "\n", "utf-8")
    install = [str(UV), "pip", "install", "--quiet", "--python", str(python),
               "-c", str(constraints), str(wheel)]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    offline = subprocess.run([*install, "--offline"], capture_output=True, text=True,
                             timeout=600, env=env, check=False)
    if offline.returncode != 0:  # an empty cache: fetch them
        subprocess.run(install, check=True, capture_output=True, timeout=600, env=env)
    return python


def test_the_wheel_holds_the_client_only_and_needs_joserfc_and_httpx(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = email.parser.Parser().parsestr(archive.read(
            "jitprov_client-0.1.0.dist-info/METADATA").decode())
    assert {name.split("/")[0] for name in names} == {
        "jitprov_client", "jitprov_client-0.1.0.dist-info"}
    assert "jitprov_client/py.typed" in names
    assert "jitprov_client/django/backends.py" in names
    requires = metadata.get_all("Requires-Dist") or []
    plain = sorted(re.split(r"[<>=!~ ;\[]", r)[0].lower() for r in requires if "extra ==" not in r)
    assert plain == ["httpx", "joserfc"]
    assert set(metadata.get_all("Provides-Extra") or []) == {"django", "fastapi"}
    assert metadata["Name"] == "jitprov-client"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_installed_alone_it_verifies_a_real_token_without_the_server(
        venv: Path, ctx: ServiceContext, clock: Clock, tmp_path: Path) -> None:
    clock.now = datetime.now(UTC)  # the WSGI middleware verifies against the real clock
    setup_connection(ctx)
    sso: TestClient
    with make_client(ctx) as sso:
        sign_in(sso)
        token = sso.get("/auth/verify").headers["x-jitprov-token"]
        jwks = sso.get("/.well-known/jwks.json").json()
        me = sso.get("/me").json()
    given = {"token": token, "jwks": jwks, "now": int(clock.now.timestamp()),
             "server_only": SERVER_ONLY}
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE, "utf-8")
    run = subprocess.run([str(venv), "-I", str(probe)], input=json.dumps(given),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    seen = json.loads(run.stdout)
    assert (seen["sub"], seen["roles"], seen["expired"], seen["wsgi"]) == (
        me["id"], ["nurse", "staff"], "refused", "ana@hospital.example")
    assert seen["present"] == []
    assert "jitprov-client" in seen["distributions"]
    assert {"joserfc", "httpx"} <= set(seen["distributions"])
    assert "pip install 'jitprov-client[fastapi]'" in seen["refusals"]["jitprov_client.fastapi"]
    assert "pip install 'jitprov-client[django]'" in seen["refusals"]["jitprov_client.django"]


def test_the_server_re_exports_the_client_rather_than_a_copy() -> None:
    import jitprov.client
    import jitprov_client
    from jitprov_client.fastapi import requires_role

    for name in jitprov.client.__all__:
        expected = requires_role if name == "requires_role" else getattr(jitprov_client, name)
        assert getattr(jitprov.client, name) is expected, name
    assert Path(jitprov_client.__file__).is_relative_to(CLIENT / "src")
    assert not (REPO / "src" / "jitprov_client").exists()


def test_the_server_wheel_and_the_image_take_the_client_from_its_one_source(
        tmp_path: Path) -> None:
    """The image's builder copies what the Dockerfile names and runs ``pip wheel .``: the
    same here, from a copy of those paths, and the server's wheel holds jitprov_client."""
    dockerfile = (REPO / "Dockerfile").read_text("utf-8")
    build = tmp_path / "build"
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", dockerfile, re.M):
        *sources, destination = line.split()
        for name in sources:  # each lands at its own path under WORKDIR
            assert destination in ("./", f"./{name}"), line
            if (REPO / name).is_dir():
                shutil.copytree(REPO / name, build / name,
                                ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            else:
                (build / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(REPO / name, build / name)
    subprocess.run([str(UV), "build", "--quiet", "--wheel", "--out-dir", str(tmp_path / "dist"),
                    str(build)], check=True, capture_output=True, timeout=600)
    [server] = (tmp_path / "dist").glob("jitprov-0.1.0-*.whl")
    with zipfile.ZipFile(server) as archive:
        names = set(archive.namelist())
    assert {"jitprov/client/__init__.py", "jitprov_client/__init__.py",
            "jitprov_client/verify.py", "jitprov_client/django/backends.py"} <= names


def test_caches_and_build_output_in_the_client_tree_are_ignored_by_git() -> None:
    """Tool caches next to the client's sources (mypy's, pytest's, bytecode) never reach a
    commit, from the repository or from a copy of clients/python on its own."""
    git = shutil.which("git")
    if git is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    paths = ["clients/python/tests/.mypy_cache/3.11/x.json", "clients/python/.pytest_cache/x",
             "clients/python/src/jitprov_client/__pycache__/verify.cpython-311.pyc",
             "clients/python/src/jitprov_client.egg-info/PKG-INFO",
             "clients/python/dist/jitprov_client-0.1.0-py3-none-any.whl",
             "clients/python/tests/.ruff_cache/x", "clients/python/tests/.hypothesis/x"]
    ignored = subprocess.run([git, "check-ignore", "--no-index", "-v", *paths], cwd=REPO,
                             capture_output=True, text=True, check=False).stdout.splitlines()
    assert [line.rsplit("\t", 1)[1] for line in ignored] == paths
    assert all(line.startswith("clients/python/.gitignore:") for line in ignored), ignored
    own = (CLIENT / ".gitignore").read_text("utf-8").split()
    assert {"__pycache__/", ".mypy_cache/", ".pytest_cache/", "*.egg-info/", "dist/"} <= set(own)
